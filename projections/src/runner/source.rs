//! Reading a projection's batches: a filtered page of the log, brought up
//! to date by the upcasters and decoded into the projection's event set.

use std::marker::PhantomData;

use annals_core::upcast::Upcasters;
use annals_core::{
    Checkpoint, EventId, EventSet, EventStore, EventType, Position, ReadAll, RecordedEvent,
};

use crate::envelope::Envelope;
use crate::error::ProjectionFailure;
use crate::error::{Found, RunError};
use crate::projection::UnknownEvents;

/// An event that could not be decoded: the batch stops before it.
#[derive(Debug, Clone)]
pub(crate) struct Undecodable {
    pub(crate) position: Position,
    pub(crate) event_id: EventId,
    pub(crate) event_type: EventType,
    pub(crate) error: String,
}

impl Undecodable {
    /// The event of `envelope`, which failed with `error`.
    pub(crate) fn at<E>(envelope: &Envelope<E>, error: String) -> Self {
        Undecodable {
            position: envelope.position,
            event_id: envelope.event_id,
            event_type: envelope.event_type.clone(),
            error,
        }
    }

    /// The failure of projection `projection` at this event.
    pub(crate) fn into_failure(self, projection: &'static str) -> ProjectionFailure {
        ProjectionFailure::Event {
            projection,
            position: self.position,
            event_id: self.event_id,
            event_type: self.event_type,
            error: self.error,
        }
    }
}

/// One batch of a projection.
pub(crate) struct Batch<E> {
    /// The decoded events, in position order.
    pub(crate) events: Vec<Envelope<E>>,
    /// The store looked this far: every wanted event up to here is in
    /// `events` (and the position of `undecodable`, if any, is above it).
    pub(crate) read_through: Position,
    /// The id of the stored event at `read_through`, if the page held it.
    pub(crate) through_id: Option<EventId>,
    /// The event the batch stopped at, because it did not decode.
    pub(crate) undecodable: Option<Undecodable>,
    /// Whether the page was full: more may follow at once.
    pub(crate) full: bool,
}

/// Where a projection reads its events.
pub(crate) struct Source<S, E> {
    pub(crate) store: S,
    projection: &'static str,
    upcasters: Upcasters,
    unknown: UnknownEvents,
    batch_size: usize,
    events: PhantomData<fn() -> E>,
}

impl<S: EventStore, E: EventSet> Source<S, E> {
    pub(crate) fn new(
        store: S,
        projection: &'static str,
        upcasters: Upcasters,
        unknown: UnknownEvents,
        batch_size: usize,
    ) -> Self {
        Source {
            store,
            projection,
            upcasters,
            unknown,
            batch_size,
            events: PhantomData,
        }
    }

    fn read_failed(&self, source: annals_core::ReadError) -> RunError {
        RunError::Read {
            projection: self.projection,
            source,
        }
    }

    /// The next batch after `after`.
    pub(crate) async fn next(&self, after: Position) -> Result<Batch<E>, RunError> {
        let read = E::narrow(ReadAll::after(after)).limit(self.batch_size);
        let page = self
            .store
            .read_all(read)
            .await
            .map_err(|e| self.read_failed(e))?;
        let full = page.events.len() >= self.batch_size;
        let read_through = page.read_through;
        let through_id = page
            .events
            .last()
            .filter(|e| e.position == read_through)
            .map(|e| e.event_id);
        let mut events = Vec::with_capacity(page.events.len());
        let mut parts = Vec::with_capacity(1);
        for stored in page.events {
            let (position, event_id, stored_type) =
                (stored.position, stored.event_id, stored.event_type.clone());
            let stop = |error: String| Undecodable {
                position,
                event_id,
                event_type: stored_type.clone(),
                error,
            };
            parts.clear();
            if let Err(error) = self.upcasters.upcast_into(stored, &mut parts) {
                return Ok(self.cut(events, stop(error.to_string())));
            }
            for part in parts.drain(..) {
                match E::decode(&part) {
                    Ok(Some(event)) => events.push(envelope(event, part)),
                    Ok(None) if self.unknown == UnknownEvents::Skip => {}
                    Ok(None) => {
                        let error = format!(
                            "event type {:?} is not one the projection knows, in a category it reads",
                            part.event_type.as_str()
                        );
                        return Ok(self.cut(events, stop(error)));
                    }
                    Err(error) => return Ok(self.cut(events, stop(error.source.to_string()))),
                }
            }
        }
        Ok(Batch {
            events,
            read_through,
            through_id,
            undecodable: None,
            full,
        })
    }

    /// A batch of the events before an undecodable one: parts of its own
    /// stored event (a split) go too, since a checkpoint never falls between
    /// the parts of one position.
    fn cut(&self, mut events: Vec<Envelope<E>>, undecodable: Undecodable) -> Batch<E> {
        events.retain(|e| e.position < undecodable.position);
        Batch {
            events,
            read_through: Position(undecodable.position.0 - 1),
            through_id: None,
            undecodable: Some(undecodable),
            full: true,
        }
    }

    /// The id of the stored event at `position`, if there is one.
    pub(crate) async fn event_at(&self, position: Position) -> Result<Option<EventId>, RunError> {
        event_at(&self.store, position)
            .await
            .map_err(|e| self.read_failed(e))
    }

    /// The checkpoint after a batch that read through `position`.
    pub(crate) async fn checkpoint_at(
        &self,
        position: Position,
        known: Option<EventId>,
        version: u32,
    ) -> Result<Checkpoint, RunError> {
        let event_id = match known {
            Some(id) => Some(id),
            None => self.event_at(position).await?,
        };
        Ok(Checkpoint {
            position,
            event_id,
            version,
        })
    }

    /// Checks that the log still holds what `checkpoint` says was read.
    pub(crate) async fn verify(&self, checkpoint: &Checkpoint) -> Result<(), RunError> {
        if checkpoint.position == Position::START {
            return Ok(());
        }
        let head = self.store.head().await.map_err(|e| self.read_failed(e))?;
        let lost = |found| RunError::LostCommits {
            projection: self.projection,
            position: checkpoint.position,
            checkpoint_event: checkpoint.event_id,
            found,
        };
        if head < checkpoint.position {
            return Err(lost(Found::HeadBelow(head)));
        }
        let there = self.event_at(checkpoint.position).await?;
        match (checkpoint.event_id, there) {
            (Some(expected), Some(found)) if expected != found => {
                Err(lost(Found::OtherEvent(found)))
            }
            (Some(_), None) => Err(lost(Found::NoEvent)),
            _ => Ok(()),
        }
    }
}

/// The id of the event `store` holds at `position`, if there is one.
pub(crate) async fn event_at<S: EventStore>(
    store: &S,
    position: Position,
) -> Result<Option<EventId>, annals_core::ReadError> {
    if position == Position::START {
        return Ok(None);
    }
    let page = store
        .read_all(ReadAll::after(Position(position.0 - 1)).limit(1))
        .await?;
    Ok(page
        .events
        .first()
        .filter(|e| e.position == position)
        .map(|e| e.event_id))
}

/// `event`, decoded from `part`, with everything the store knows of it.
pub(crate) fn envelope<E>(event: E, part: RecordedEvent) -> Envelope<E> {
    Envelope {
        event,
        position: part.position,
        stream_id: part.stream_id,
        version: part.version,
        event_id: part.event_id,
        event_type: part.event_type,
        metadata: part.metadata,
        recorded_at: part.recorded_at,
    }
}
