//! Rebuilding an aggregate from its stream: the part a repository and a
//! unit of work share.

use crate::aggregate::Aggregate;
use crate::contract::EventStore;
use crate::domain::upcasters::registry_of;
use crate::id::{check_category, StreamId};
use crate::read::{ReadStream, ReplayEvent, MAX_READ_LIMIT};
use crate::repository::error::{AggregateError, LoadError};
use crate::upcaster::registry::Upcasters;
use crate::upcasting::upcast_page;

/// What loading an aggregate type needs, checked once: its category, and
/// its event type's upcasters.
#[derive(Clone, Copy)]
pub(crate) struct Replayer {
    upcasters: Option<&'static Upcasters>,
}

impl Replayer {
    /// Checks the aggregate type: a valid category, valid upcaster chains.
    pub(crate) fn of<A: Aggregate>() -> Result<Self, AggregateError> {
        check_category(A::CATEGORY).map_err(|source| AggregateError::InvalidCategory { source })?;
        let upcasters = registry_of::<A::Event>()
            .map_err(|source| AggregateError::InvalidUpcasters { source })?;
        Ok(Replayer { upcasters })
    }

    /// Applies the stream's events after `from` to `state`, a page at a
    /// time; returns the last version applied (`from` if none).
    pub(crate) async fn replay<A: Aggregate, S: EventStore + ?Sized>(
        &self,
        store: &S,
        stream: &StreamId,
        state: &mut A,
        from: u64,
    ) -> Result<u64, LoadError> {
        let mut version = from;
        loop {
            let read = ReadStream::forward().from_version(version + 1);
            let (page, full, last) = self.read_page(store, stream, read).await?;
            for stored in &page {
                state.apply(&decode::<A::Event>(stream, stored)?);
            }
            version = last.unwrap_or(version);
            if !full {
                return Ok(version);
            }
        }
    }

    /// One page of a stream, brought up to date: the events, whether the
    /// page was full (more may follow), and the last stored version read.
    async fn read_page<S: EventStore + ?Sized>(
        &self,
        store: &S,
        stream: &StreamId,
        read: ReadStream,
    ) -> Result<(Vec<ReplayEvent>, bool, Option<u64>), LoadError> {
        match self.upcasters {
            None => {
                let page = store.read_stream_for_replay(stream, read).await?;
                let (full, last) = (page.len() == MAX_READ_LIMIT, page.last().map(|e| e.version));
                Ok((page, full, last))
            }
            Some(upcasters) => {
                // Upcasters see the whole stored event (metadata included),
                // and may split one in several, so this path reads whole
                // events and upcasts the page.
                let page = store.read_stream(stream, read).await?;
                let (full, last) = (page.len() == MAX_READ_LIMIT, page.last().map(|e| e.version));
                let page = upcast_page(upcasters, page)?;
                Ok((
                    page.into_iter().map(ReplayEvent::from).collect(),
                    full,
                    last,
                ))
            }
        }
    }
}

/// Decodes one stored event into the aggregate's event type.
fn decode<E: crate::domain::DomainEvent>(
    stream: &StreamId,
    stored: &ReplayEvent,
) -> Result<E, LoadError> {
    E::decode(
        stored.event_type.as_str(),
        stored.schema_version,
        &stored.payload,
    )
    .map_err(|source| {
        LoadError::Decode(crate::decode::EventDecodeError {
            stream: stream.clone(),
            version: stored.version,
            position: stored.position,
            source,
        })
    })
}
