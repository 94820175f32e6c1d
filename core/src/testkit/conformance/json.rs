//! Any JSON a payload may hold comes back byte for byte: strings from every
//! Unicode plane, escapes, big and negative numbers, floats, nesting, odd
//! spacing. One property, run on every backend, so that two backends can
//! never disagree about what a payload is.

use std::sync::Arc;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::Value;

use super::{ensure, CaseResult, Options, Step};
use crate::{EventStore, EventStoreExt, ExpectedVersion, NewEvent, Payload, StreamId};

/// How many values each run tries (each written three ways).
const CASES: usize = 48;

/// Any JSON value a payload may hold: no NUL, no non-finite float.
pub fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinities", |f| f.is_finite())
            .prop_map(Value::from),
        // Any characters but NUL, which payloads refuse.
        "[^\u{0}]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[^\u{0}]{0,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The same value written three ways: compact, pretty, and indented with
/// tabs and CRLF line ends, as hand-written clients might send it.
fn texts(value: &Value) -> Result<Vec<String>, String> {
    let compact = value.to_string();
    let pretty = serde_json::to_string_pretty(value).step("pretty-print")?;
    // JSON strings hold no raw newlines, so spaces at a line's start are
    // always indentation.
    let tabbed: Vec<String> = pretty
        .lines()
        .map(|line| {
            let body = line.trim_start_matches(' ');
            "\t".repeat((line.len() - body.len()) / 2) + body
        })
        .collect();
    Ok(vec![compact, pretty, tabbed.join("\r\n")])
}

/// `CASES` values from a seeded generator (made before any await: the
/// generator is not `Send`).
fn generate(seed: u64) -> Result<Vec<Value>, String> {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
    );
    let strategy = any_json();
    (0..CASES)
        .map(|_| {
            strategy
                .new_tree(&mut runner)
                .map(|tree| tree.current())
                .map_err(|e| format!("generating a value: {e}"))
        })
        .collect()
}

/// Guarantee 7: generated JSON values, each written three ways, read back
/// byte for byte and equal as values. The seed is fixed (or taken from
/// `ANNALS_TEST_SEED`), so a failure repeats.
pub(crate) async fn any_json_payload_reads_back_byte_for_byte(
    store: Arc<dyn EventStore>,
    _: Options,
) -> CaseResult {
    let seed = std::env::var("ANNALS_TEST_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0x15_0f1d);
    for (case, value) in generate(seed)?.into_iter().enumerate() {
        for (n, text) in texts(&value)?.into_iter().enumerate() {
            let payload = Payload::from_json(text.clone()).step("payload")?;
            let stream = StreamId::new(format!("json-{case}x{n}")).step("stream id")?;
            let event = NewEvent::new("Value", 1, payload).step("event")?;
            store
                .append_to_stream(&stream, ExpectedVersion::NoStream, vec![event])
                .await
                .step("append")?;
            let stored = store.read_stream_to_end(&stream).await.step("read")?;
            let Some(last) = stored.last() else {
                return Err(format!("case {case}: nothing stored (seed {seed})"));
            };
            ensure!(
                last.payload.as_str() == text,
                "case {case}: the payload bytes changed (seed {seed})"
            );
            let back: Value = serde_json::from_str(last.payload.as_str()).step("parse")?;
            ensure!(
                back == value,
                "case {case}: the payload reads back as another value (seed {seed})"
            );
        }
    }
    Ok(())
}
