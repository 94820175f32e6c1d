//! Any JSON a payload may hold comes back byte for byte, on the SQLite and
//! the in-memory store alike: strings from every Unicode plane, escapes,
//! big and negative numbers, floats, deep-ish nesting, odd spacing.

use annals_core::{
    EventStore, EventStoreExt, ExpectedVersion, InMemoryStore, NewEvent, Payload, StreamId,
};
use annals_sqlite::SqliteStore;
use proptest::prelude::*;
use serde_json::Value;

fn any_json() -> impl Strategy<Value = Value> {
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
fn texts(value: &Value) -> Vec<String> {
    let compact = value.to_string();
    let pretty = serde_json::to_string_pretty(value).expect("a JSON value serializes");
    // JSON strings hold no raw newlines, so spaces at a line's start are
    // always indentation.
    let tabbed: Vec<String> = pretty
        .lines()
        .map(|line| {
            let body = line.trim_start_matches(' ');
            "\t".repeat((line.len() - body.len()) / 2) + body
        })
        .collect();
    let tabbed = tabbed.join("\r\n");
    vec![compact, pretty, tabbed]
}

async fn round_trip(store: &impl EventStore, value: &Value) -> Result<(), TestCaseError> {
    let fail = |e: &dyn std::fmt::Display| TestCaseError::fail(e.to_string());
    for (n, text) in texts(value).into_iter().enumerate() {
        let payload = Payload::from_json(text.clone()).map_err(|e| fail(&e))?;
        let stream = StreamId::new(format!("json-{n}")).map_err(|e| fail(&e))?;
        let event = NewEvent::new("Value", 1, payload).map_err(|e| fail(&e))?;
        store
            .append_to_stream(&stream, ExpectedVersion::Any, vec![event])
            .await
            .map_err(|e| fail(&e))?;
        let stored = store
            .read_stream_to_end(&stream)
            .await
            .map_err(|e| fail(&e))?;
        let last = stored.last().ok_or_else(|| fail(&"nothing stored"))?;
        prop_assert_eq!(last.payload.as_str(), text.as_str());
        let back: Value = serde_json::from_str(last.payload.as_str()).map_err(|e| fail(&e))?;
        prop_assert_eq!(&back, value);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_json_payload_reads_back_byte_for_byte_on_every_store(value in any_json()) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        runtime.block_on(async {
            let sqlite = SqliteStore::open_temporary()
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            round_trip(&sqlite, &value).await?;
            round_trip(&InMemoryStore::new(), &value).await
        })?;
    }
}
