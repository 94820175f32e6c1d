//! Helpers shared by the integration tests.

use std::collections::HashMap;

use annals_core::{EventStore, Position, ReadAll, ReadError, RecordedEvent};

/// The whole global log, read page by page.
pub async fn read_log(store: &impl EventStore) -> Result<Vec<RecordedEvent>, ReadError> {
    let mut events: Vec<RecordedEvent> = Vec::new();
    loop {
        let after = events.last().map_or(Position::START, |e| e.position);
        let page = store.read_all(ReadAll::after(after)).await?;
        if page.is_empty() {
            return Ok(events);
        }
        events.extend(page);
    }
}

/// Panics unless positions are 1..=n and each stream's versions are 1..=n.
pub fn assert_no_gaps(events: &[RecordedEvent], context: &str) {
    for (e, p) in events.iter().zip(1u64..) {
        assert_eq!(e.position, Position(p), "positions have a gap ({context})");
    }
    let mut versions: HashMap<&str, u64> = HashMap::new();
    for e in events {
        let v = versions.entry(e.stream_id.as_str()).or_default();
        *v += 1;
        assert_eq!(
            e.version, *v,
            "{}: versions have a gap ({context})",
            e.stream_id
        );
    }
}
