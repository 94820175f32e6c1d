//! Checks any store test needs: the whole log, and whether its positions
//! and versions have gaps.

use std::collections::HashMap;

use crate::{EventStore, Position, ReadAll, ReadError, RecordedEvent};

/// The whole global log, read page by page, following each page's
/// `read_through`.
///
/// ```
/// use annals_core::testkit::read_log;
/// use annals_core::InMemoryStore;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), annals_core::ReadError> {
/// assert!(read_log(&InMemoryStore::new()).await?.is_empty());
/// # Ok(()) }
/// ```
pub async fn read_log<S: EventStore + ?Sized>(store: &S) -> Result<Vec<RecordedEvent>, ReadError> {
    let mut events: Vec<RecordedEvent> = Vec::new();
    let mut after = Position::START;
    loop {
        let page = store.read_all(ReadAll::after(after)).await?;
        let (empty, read_through) = (page.is_empty(), page.read_through);
        events.extend(page);
        if empty || read_through <= after {
            return Ok(events);
        }
        after = read_through;
    }
}

/// Whether a whole log, in position order, has positions 1, 2, 3... and
/// each stream versions 1, 2, 3..., with no gap or repeat. `Err` says
/// where the first gap is.
pub fn check_no_gaps(events: &[RecordedEvent]) -> Result<(), String> {
    for (e, p) in events.iter().zip(1u64..) {
        if e.position != Position(p) {
            return Err(format!("position {} where {p} was due", e.position));
        }
    }
    let mut versions: HashMap<&str, u64> = HashMap::new();
    for e in events {
        let v = versions.entry(e.stream_id.as_str()).or_default();
        *v += 1;
        if e.version != *v {
            return Err(format!(
                "stream {} has version {} where {v} was due",
                e.stream_id, e.version
            ));
        }
    }
    Ok(())
}

/// Panics, naming `context`, unless [`check_no_gaps`] passes.
pub fn assert_no_gaps(events: &[RecordedEvent], context: &str) {
    if let Err(gap) = check_no_gaps(events) {
        panic!("the log has a gap ({context}): {gap}");
    }
}
