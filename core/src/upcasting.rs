//! A store whose reads go through an upcaster registry.

use async_trait::async_trait;

use crate::append::{AppendError, AppendOutcome, AppendRequest};
use crate::contract::{EventStore, HeadWatch};
use crate::event::{Position, RecordedEvent};
use crate::id::{EventType, StreamId};
use crate::read::{Page, ReadAll, ReadError, ReadStream};
use crate::snapshot::{Snapshot, SnapshotError, SnapshotStore};
use crate::upcaster::registry::Upcasters;

/// A store whose reads go through an upcaster registry; writes pass through.
///
/// Made with [`crate::EventStoreExt::with_upcasters`]. It is what reads
/// events that an upcaster splits in several: a split event's parts share
/// the stored event's stream, version and position, so a page may hold more
/// events than its limit. Filtering the global log by event type also finds
/// the old names that upcast into the asked-for types.
#[derive(Clone)]
pub struct UpcastingStore<S> {
    inner: S,
    upcasters: Upcasters,
}

impl<S> UpcastingStore<S> {
    /// Wraps a store.
    pub fn new(inner: S, upcasters: Upcasters) -> Self {
        UpcastingStore { inner, upcasters }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

#[async_trait]
impl<S: EventStore> EventStore for UpcastingStore<S> {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, AppendError> {
        self.inner.append(request).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        read: ReadStream,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        let page = self.inner.read_stream(stream, read).await?;
        upcast_page(&self.upcasters, page)
    }

    async fn read_all(&self, read: ReadAll) -> Result<Page, ReadError> {
        let Some(wanted) = read.filter().event_types().map(<[EventType]>::to_vec) else {
            let page = self.inner.read_all(read).await?;
            let events = upcast_page(&self.upcasters, page.events)?;
            return Ok(Page::new(events, page.read_through));
        };
        // Old names are asked for only to be upcast; what they become may
        // not be wanted (a split's other parts), so the page is filtered
        // again. `read_through` still says how far the store looked.
        let read = read.event_types(self.upcasters.stored_names_for(&wanted));
        let page = self.inner.read_all(read).await?;
        let events = upcast_page(&self.upcasters, page.events)?
            .into_iter()
            .filter(|e| wanted.contains(&e.event_type))
            .collect();
        Ok(Page::new(events, page.read_through))
    }

    async fn head(&self) -> Result<Position, ReadError> {
        self.inner.head().await
    }

    fn watch_head(&self) -> HeadWatch {
        self.inner.watch_head()
    }
}

#[async_trait]
impl<S: SnapshotStore> SnapshotStore for UpcastingStore<S> {
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), SnapshotError> {
        self.inner.save_snapshot(snapshot).await
    }
    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, SnapshotError> {
        self.inner.load_snapshot(stream).await
    }
}

/// Brings a page of stored events up to date; a failure names the event.
pub(crate) fn upcast_page(
    upcasters: &Upcasters,
    page: Vec<RecordedEvent>,
) -> Result<Vec<RecordedEvent>, ReadError> {
    if upcasters.is_empty() {
        return Ok(page);
    }
    let mut out = Vec::with_capacity(page.len());
    for event in page {
        let (position, stream, version) = (event.position, event.stream_id.clone(), event.version);
        upcasters
            .upcast_into(event, &mut out)
            .map_err(|source| ReadError::Upcast {
                stream,
                version,
                position,
                source,
            })?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upcaster::registry::tests::bank_chain;
    use crate::{EventStoreExt, ExpectedVersion, InMemoryStore, NewEvent, Payload};
    use std::error::Error;

    #[tokio::test]
    async fn type_filtered_page_reads_through_what_it_skipped() -> Result<(), Box<dyn Error>> {
        let inner = InMemoryStore::new();
        let stream = StreamId::new("account-1")?;
        // Each old "AccountOpened" splits into "Opened" and "Named"; only
        // the last stored event has a wanted "Closed".
        let opened = Payload::from_json(r#"{"name":"a"}"#)?;
        let mut events: Vec<NewEvent> = (0..5)
            .map(|_| NewEvent::new("AccountOpened", 1, opened.clone()))
            .collect::<Result<_, _>>()?;
        events.push(NewEvent::new("Closed", 1, Payload::from_json("{}")?)?);
        inner
            .append_to_stream(&stream, ExpectedVersion::NoStream, events)
            .await?;
        let store = inner.with_upcasters(bank_chain().current("Closed", 1).build()?);
        let page = store
            .read_all(
                ReadAll::after(Position::START)
                    .event_types([EventType::new("Opened")?, EventType::new("Named")?])
                    .limit(1),
            )
            .await?;
        assert_eq!(page.len(), 2, "one stored event split in two");
        let page = store
            .read_all(
                ReadAll::after(Position::START)
                    .event_types([EventType::new("Closed")?])
                    .limit(1),
            )
            .await?;
        let found: Vec<(&str, Position)> = page
            .events
            .iter()
            .map(|e| (e.event_type.as_str(), e.position))
            .collect();
        assert_eq!(found, [("Closed", Position(6))]);
        assert_eq!(page.read_through, Position(6));
        // A current "Opened" v3 is read (it is a name that can become
        // "Named"), upcasts to nothing wanted, and is read through.
        let current = NewEvent::new("Opened", 3, Payload::from_json(r#"{"owner":"a"}"#)?)?;
        store
            .append_to_stream(&stream, ExpectedVersion::Exact(6), vec![current])
            .await?;
        let page = store
            .read_all(ReadAll::after(Position(6)).event_types([EventType::new("Named")?]))
            .await?;
        assert!(page.is_empty());
        assert_eq!(
            page.read_through,
            Position(7),
            "the skipped event is read through"
        );
        Ok(())
    }

    #[tokio::test]
    async fn upcasting_store_reads_old_names_through_new_type_filters() -> Result<(), Box<dyn Error>>
    {
        let inner = InMemoryStore::new();
        let stream = StreamId::new("account-1")?;
        let old = NewEvent::new("AccountOpened", 1, Payload::from_json(r#"{"name":"ada"}"#)?)?;
        let other = NewEvent::new("Closed", 1, Payload::from_json("{}")?)?;
        inner
            .append_to_stream(&stream, ExpectedVersion::NoStream, vec![old, other])
            .await?;
        let store = inner
            .clone()
            .with_upcasters(bank_chain().current("Closed", 1).build()?);
        let page = store
            .read_all(ReadAll::after(Position::START).event_types([EventType::new("Opened")?]))
            .await?;
        let types: Vec<&str> = page.events.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(types, ["Opened"]);
        let whole = store.read_stream_to_end(&stream).await?;
        let types: Vec<&str> = whole.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(types, ["Opened", "Named", "Closed"]);
        // Stored rows are never rewritten.
        let raw = inner.read_stream_to_end(&stream).await?;
        assert_eq!(raw[0].event_type, "AccountOpened");
        Ok(())
    }
}
