//! JSON text as hand-written clients send it comes back from PostgreSQL
//! byte for byte, exactly as from the in-memory store: escapes of every
//! kind (`\u00e9`, surrogate pairs, `\/`), numbers in any spelling
//! (exponents, `-0`, integers far past `u64`), odd whitespace, and text
//! from every Unicode plane. The same values also travel as metadata
//! fields, read back equal. (The conformance suite checks the JSON that
//! serde_json writes; this checks what it never writes.)

mod common;

use annals_core::prelude::*;
use annals_core::{
    EventStore, ExpectedVersion, InMemoryStore, Metadata, NewEvent, Payload, Position, ReadAll,
    RecordedEvent, StreamId,
};
use annals_postgres::testing::{url_or_skip, Schemas};
use common::TestResult;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Value};

/// Modest: every case is several round trips to the server.
const CASES: u32 = 32;

/// Whitespace between tokens, as JSON allows it.
fn gap() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![Just(" "), Just("\t"), Just("\n"), Just("\r\n")],
        0..3,
    )
    .prop_map(|parts| parts.concat())
}

/// A number in any spelling JSON allows, in or far out of `f64`'s range
/// (the out-of-range ones are refused, on every store alike).
fn number() -> impl Strategy<Value = String> {
    "-?(0|[1-9][0-9]{0,30})(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?"
}

/// A string literal made of plain text from every plane and escapes.
fn string() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[^\"\\\\\u{0}-\u{1f}]{1,4}",
        prop::sample::select(vec![
            "\\\"", "\\\\", "\\/", "\\b", "\\f", "\\n", "\\r", "\\t"
        ])
        .prop_map(str::to_owned),
        // A BMP character other than NUL and surrogates, escaped.
        (1u32..0xD800).prop_map(|c| format!("\\u{c:04x}")),
        (0xE000u32..=0xFFFF).prop_map(|c| format!("\\u{c:04X}")),
        // A character past the BMP, as an escaped surrogate pair.
        (0x10000u32..=0x10FFFF).prop_map(|c| {
            let c = c - 0x10000;
            format!(
                "\\u{:04x}\\u{:04x}",
                0xD800 + (c >> 10),
                0xDC00 + (c & 0x3FF)
            )
        }),
    ];
    prop::collection::vec(piece, 0..6).prop_map(|pieces| format!("\"{}\"", pieces.concat()))
}

/// Any JSON text, with keys made unique (duplicate keys are refused).
fn json_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("false".to_owned()),
        number(),
        string(),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec((gap(), inner.clone(), gap()), 0..5).prop_map(|items| {
                let items: Vec<String> = items.into_iter().map(|(a, v, b)| a + &v + &b).collect();
                format!("[{}]", items.join(","))
            }),
            prop::collection::vec((gap(), string(), gap(), inner, gap()), 0..5).prop_map(
                |members| {
                    let members: Vec<String> = members
                        .into_iter()
                        .enumerate()
                        .map(|(i, (a, key, b, v, c))| {
                            // "k<i>" in front keeps every key distinct.
                            format!("{a}\"k{i}{}{b}:{v}{c}", &key[1..])
                        })
                        .collect();
                    format!("{{{}}}", members.join(","))
                }
            ),
        ]
    })
    .prop_flat_map(|text| (gap(), Just(text), gap()))
    .prop_map(|(a, text, b)| a + &text + &b)
}

/// Appends `payload` with `fields` to a new stream and reads it back by
/// stream and from the log.
async fn round_trip(
    store: &impl EventStore,
    stream: &StreamId,
    payload: Payload,
    fields: &Map<String, Value>,
) -> TestResult<[RecordedEvent; 2]> {
    let metadata = Metadata {
        fields: fields.clone(),
        ..Metadata::default()
    };
    let event = NewEvent::new("Value", 1, payload)?.with_metadata(metadata);
    let outcome = store
        .append_to_stream(stream, ExpectedVersion::NoStream, vec![event])
        .await?;
    let position = outcome.last_position().ok_or("nothing recorded")?;
    let by_stream = store
        .read_stream_to_end(stream)
        .await?
        .pop()
        .ok_or("nothing in the stream")?;
    let from_log = store
        .read_all(ReadAll::after(Position(position.0 - 1)).limit(1))
        .await?
        .events
        .pop()
        .ok_or("nothing in the log")?;
    Ok([by_stream, from_log])
}

#[test]
fn hand_written_json_reads_back_from_postgres_byte_for_byte_as_from_memory() -> TestResult {
    let Some(url) = url_or_skip("hand_written_json_reads_back_from_postgres_byte_for_byte") else {
        return Ok(());
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let schemas = Schemas::new(url, "json");
    let postgres = runtime.block_on(schemas.store())?;
    let memory = InMemoryStore::new();
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    let case = std::sync::atomic::AtomicU64::new(0);
    let stored_cases = std::sync::atomic::AtomicU32::new(0);
    let fail = |e: &dyn std::fmt::Display| TestCaseError::fail(e.to_string());
    let outcome = runner.run(&json_text(), |text| {
        let case = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Numbers out of f64's range are refused before any store sees
        // them; the rest must round-trip.
        let Ok(payload) = Payload::from_json(text.clone()) else {
            return Ok(());
        };
        stored_cases.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let value: Value = serde_json::from_str(&text).map_err(|e| fail(&e))?;
        let mut fields = Map::new();
        fields.insert("value".to_owned(), value.clone());
        let stream = StreamId::new(format!("json-{case}")).map_err(|e| fail(&e))?;
        let read = runtime.block_on(async {
            let stored = round_trip(&postgres, &stream, payload.clone(), &fields).await?;
            let expected = round_trip(&memory, &stream, payload, &fields).await?;
            TestResult::Ok((stored, expected))
        });
        let (stored, expected) = read.map_err(|e| fail(&*e))?;
        for (got, want) in stored.iter().zip(&expected) {
            prop_assert_eq!(got.payload.as_str(), text.as_str(), "payload bytes changed");
            prop_assert_eq!(got.payload.as_str(), want.payload.as_str());
            prop_assert_eq!(
                &got.metadata,
                &want.metadata,
                "metadata differs from memory's"
            );
            prop_assert_eq!(&got.metadata.fields, &fields, "metadata changed");
        }
        Ok(())
    });
    runtime.block_on(schemas.drop_all());
    outcome.map_err(|e| e.to_string())?;
    let stored_cases = stored_cases.into_inner();
    assert!(
        stored_cases >= CASES / 2,
        "only {stored_cases} of {CASES} generated texts were valid payloads"
    );
    Ok(())
}
