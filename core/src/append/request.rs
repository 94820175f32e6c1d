//! What an append asks for, and the checks that need no storage.

use std::collections::HashSet;

use crate::append::error::AppendError;
use crate::append::expected::ExpectedVersion;
use crate::append::tracking::Tracking;
use crate::checkpoint::Checkpoint;
use crate::event::{NewEvent, Position};
use crate::id::StreamId;

/// The largest stream version any store holds: the largest signed 64-bit
/// integer, so that every backend (SQLite and PostgreSQL integers are
/// signed) refuses the same appends with
/// [`AppendError::VersionOverflow`].
pub const MAX_VERSION: u64 = u64::MAX >> 1;

/// Size limits on appends. Every store checks them the same way.
///
/// Defaults: 1 MiB per payload, 10,000 events and 16 MiB of payload per append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest payload, in bytes.
    pub max_payload_bytes: usize,
    /// Most events in one append.
    pub max_events_per_append: usize,
    /// Most payload bytes in one append.
    pub max_append_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload_bytes: 1024 * 1024,
            max_events_per_append: 10_000,
            max_append_bytes: 16 * 1024 * 1024,
        }
    }
}

impl Limits {
    /// Sets the largest payload, in bytes.
    pub fn max_payload_bytes(mut self, bytes: usize) -> Self {
        self.max_payload_bytes = bytes;
        self
    }
    /// Sets the most events in one append.
    pub fn max_events_per_append(mut self, count: usize) -> Self {
        self.max_events_per_append = count;
        self
    }
    /// Sets the most payload bytes in one append.
    pub fn max_append_bytes(mut self, bytes: usize) -> Self {
        self.max_append_bytes = bytes;
        self
    }
}

/// The events for one stream within an append.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamAppend {
    /// The stream.
    pub stream: StreamId,
    /// The version the stream must have.
    pub expected: ExpectedVersion,
    /// The events, in order.
    pub events: Vec<NewEvent>,
}

/// An append: events for one or more streams, committed together or not at
/// all, and optionally a named checkpoint set with them
/// ([`AppendRequest::track`]).
///
/// ```
/// use annals_core::{AppendRequest, ExpectedVersion, NewEvent, Payload, StreamId};
/// let opened = NewEvent::new("Opened", 1, Payload::from_json("{}")?)?;
/// let moved = NewEvent::new("Moved", 1, Payload::from_json("{}")?)?;
/// let request = AppendRequest::new()
///     .stream(StreamId::new("account-1")?, ExpectedVersion::NoStream, vec![opened])
///     .stream(StreamId::new("ledger-1")?, ExpectedVersion::Any, vec![moved]);
/// assert_eq!(request.event_count(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppendRequest {
    streams: Vec<StreamAppend>,
    tracking: Option<Tracking>,
}

impl AppendRequest {
    /// An empty request; add streams with [`AppendRequest::stream`].
    pub fn new() -> Self {
        AppendRequest::default()
    }

    /// A request for one stream.
    pub fn to_stream(stream: StreamId, expected: ExpectedVersion, events: Vec<NewEvent>) -> Self {
        AppendRequest::new().stream(stream, expected, events)
    }

    /// Adds a stream's events.
    pub fn stream(
        mut self,
        stream: StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Self {
        self.streams.push(StreamAppend {
            stream,
            expected,
            events,
        });
        self
    }

    /// Sets the checkpoint `name` to `checkpoint` in the same atomic append
    /// as the events, replacing any tracking set before.
    ///
    /// The append is refused with [`AppendError::AlreadyTracked`], and
    /// writes nothing, if `name`'s stored checkpoint is already at or past
    /// `checkpoint.position`, unless it is a retry of an append already
    /// committed (guarantee 13 of [`EventStore`](crate::EventStore)).
    ///
    /// ```
    /// use annals_core::{AppendRequest, Checkpoint, EventId, ExpectedVersion, NewEvent, Payload, Position, StreamId};
    /// let shipped = NewEvent::new("ShipmentRequested", 1, Payload::from_json("{}")?)?;
    /// let reacted_to = Checkpoint { position: Position(41), event_id: Some(EventId::new()), version: 1 };
    /// let request = AppendRequest::to_stream(StreamId::new("shipment-7")?, ExpectedVersion::NoStream, vec![shipped])
    ///     .track("shipping-saga", reacted_to);
    /// assert_eq!(request.tracking().map(|t| t.checkpoint.position), Some(Position(41)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn track(self, name: impl Into<String>, checkpoint: Checkpoint) -> Self {
        let first = checkpoint.position;
        self.track_from(name, first, checkpoint)
    }

    /// Like [`AppendRequest::track`], for an append that covers the
    /// positions from `first` up to the checkpoint's (the reactions to
    /// several events, committed together): it is refused with
    /// [`AppendError::AlreadyTracked`] if the stored checkpoint is at or
    /// past `first`, so that none of them is committed twice.
    pub fn track_from(
        mut self,
        name: impl Into<String>,
        first: Position,
        checkpoint: Checkpoint,
    ) -> Self {
        self.tracking = Some(Tracking {
            name: name.into(),
            first: first.min(checkpoint.position),
            checkpoint,
        });
        self
    }

    /// The checkpoint this append sets, if any.
    pub fn tracking(&self) -> Option<&Tracking> {
        self.tracking.as_ref()
    }

    /// The streams, in order.
    pub fn streams(&self) -> &[StreamAppend] {
        &self.streams
    }

    /// Takes the streams out of the request; its tracking, if any, is
    /// dropped.
    pub fn into_streams(self) -> Vec<StreamAppend> {
        self.streams
    }

    /// How many events the request holds.
    pub fn event_count(&self) -> usize {
        self.streams.iter().map(|s| s.events.len()).sum()
    }

    /// Total payload bytes.
    pub fn payload_bytes(&self) -> usize {
        self.events().map(|e| e.payload().len()).sum()
    }

    /// All events in commit order.
    pub fn events(&self) -> impl Iterator<Item = &NewEvent> {
        self.streams.iter().flat_map(|s| s.events.iter())
    }

    /// The checks that need no database: emptiness, duplicate streams and
    /// ids, limits, metadata and the tracked checkpoint's name. Every store
    /// calls this before touching storage.
    pub fn check(&self, limits: &Limits) -> Result<(), AppendError> {
        if self.streams.is_empty() {
            return Err(AppendError::Empty { stream: None });
        }
        if let Some(tracking) = &self.tracking {
            tracking.check()?;
        }
        let mut streams = HashSet::new();
        for s in &self.streams {
            if s.events.is_empty() {
                let stream = (self.streams.len() > 1).then(|| s.stream.clone());
                return Err(AppendError::Empty { stream });
            }
            if !streams.insert(&s.stream) {
                return Err(AppendError::DuplicateStream {
                    stream: s.stream.clone(),
                });
            }
        }
        let count = self.event_count();
        if count > limits.max_events_per_append {
            return Err(AppendError::TooManyEvents {
                count,
                max: limits.max_events_per_append,
            });
        }
        let mut ids = HashSet::with_capacity(count);
        let mut bytes = 0usize;
        for event in self.events() {
            if !ids.insert(event.event_id()) {
                return Err(AppendError::DuplicateEventId {
                    event_id: event.event_id(),
                });
            }
            let size = event.payload().len();
            if size > limits.max_payload_bytes {
                return Err(AppendError::PayloadTooLarge {
                    event_id: event.event_id(),
                    size,
                    max: limits.max_payload_bytes,
                });
            }
            bytes = bytes.saturating_add(size);
            event
                .metadata()
                .check()
                .map_err(|source| AppendError::InvalidMetadata {
                    event_id: event.event_id(),
                    source,
                })?;
        }
        if bytes > limits.max_append_bytes {
            return Err(AppendError::TooManyBytes {
                bytes,
                max: limits.max_append_bytes,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::NameProblem;
    use crate::payload::Payload;
    use std::error::Error;

    fn event() -> NewEvent {
        NewEvent::new("Happened", 1, Payload::from_json("{}").expect("valid")).expect("valid")
    }

    fn stream(s: &str) -> StreamId {
        StreamId::new(s).expect("valid")
    }

    #[test]
    fn check_fails_with_too_many_events() {
        let req = AppendRequest::to_stream(
            stream("a-1"),
            ExpectedVersion::Any,
            (0..3).map(|_| event()).collect(),
        );
        let err = req
            .check(&Limits::default().max_events_per_append(2))
            .unwrap_err();
        assert!(matches!(
            err,
            AppendError::TooManyEvents { count: 3, max: 2 }
        ));
    }

    #[test]
    fn check_fails_with_payload_too_large() -> Result<(), Box<dyn Error>> {
        let big = NewEvent::new(
            "Big",
            1,
            Payload::from_json(format!("\"{}\"", "x".repeat(100)))?,
        )?;
        let id = big.event_id();
        let req = AppendRequest::to_stream(stream("a-1"), ExpectedVersion::Any, vec![big]);
        let err = req
            .check(&Limits::default().max_payload_bytes(50))
            .unwrap_err();
        assert!(
            matches!(err, AppendError::PayloadTooLarge { event_id, size: 102, max: 50 } if event_id == id)
        );
        Ok(())
    }

    #[test]
    fn check_fails_with_invalid_checkpoint_name() {
        let tracked = |name: &str| {
            AppendRequest::to_stream(stream("a-1"), ExpectedVersion::Any, vec![event()])
                .track(name, Checkpoint::start(1))
        };
        for (name, expected) in [
            ("", NameProblem::Empty),
            (" saga", NameProblem::SurroundingWhitespace),
            ("sa\nga", NameProblem::ControlCharacter { at: 2 }),
        ] {
            let err = tracked(name).check(&Limits::default()).unwrap_err();
            assert!(
                matches!(&err, AppendError::InvalidCheckpointName { source } if source.problem == expected),
                "{name:?}: {err:?}"
            );
        }
        assert!(tracked("shipping saga: v2")
            .check(&Limits::default())
            .is_ok());
    }

    #[test]
    fn track_replaces_earlier_tracking() {
        let request = AppendRequest::to_stream(stream("a-1"), ExpectedVersion::Any, vec![event()])
            .track("first", Checkpoint::start(1))
            .track("second", Checkpoint::start(2));
        let tracking = request.tracking().expect("tracked");
        assert_eq!(
            (tracking.name.as_str(), tracking.checkpoint),
            ("second", Checkpoint::start(2))
        );
    }

    #[test]
    fn check_fails_with_too_many_bytes() {
        let req = AppendRequest::to_stream(
            stream("a-1"),
            ExpectedVersion::Any,
            (0..3).map(|_| event()).collect(),
        );
        let err = req
            .check(&Limits::default().max_append_bytes(5))
            .unwrap_err();
        assert!(matches!(
            err,
            AppendError::TooManyBytes { bytes: 6, max: 5 }
        ));
    }
}
