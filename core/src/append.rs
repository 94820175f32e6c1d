//! What an append asks for and what it gets back, and the checks every
//! backend applies the same way: limits, expected versions and idempotency.

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::error::AppendError;
use crate::event::{EventId, NewEvent, Position, RecordedEvent};
use crate::id::StreamId;

/// What the appender believes the stream's version to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExpectedVersion {
    /// Append whatever the stream's version is.
    Any,
    /// The stream must not exist yet. `Exact(0)` means the same.
    NoStream,
    /// The stream must exist, at any version.
    StreamExists,
    /// The stream must be exactly at this version (versions start at 1).
    Exact(u64),
}

impl ExpectedVersion {
    /// Checks the stream's current version (`None` when it has no events).
    pub fn check(&self, stream: &StreamId, current: Option<u64>) -> Result<(), AppendError> {
        let ok = match (self, current) {
            (ExpectedVersion::Any, _) => true,
            (ExpectedVersion::NoStream | ExpectedVersion::Exact(0), None) => true,
            (ExpectedVersion::StreamExists, Some(_)) => true,
            (ExpectedVersion::Exact(v), Some(c)) => *v == c,
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(AppendError::Conflict {
                stream: stream.clone(),
                expected: *self,
                actual: ActualVersion::from(current),
            })
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::NoStream | ExpectedVersion::Exact(0) => f.write_str("no stream"),
            ExpectedVersion::StreamExists => f.write_str("an existing stream"),
            ExpectedVersion::Exact(v) => write!(f, "version {v}"),
        }
    }
}

/// The version a stream had when an append was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActualVersion {
    /// The stream has no events.
    NoStream,
    /// The stream's last event has this version.
    At(u64),
}

impl From<Option<u64>> for ActualVersion {
    fn from(version: Option<u64>) -> Self {
        version.map_or(ActualVersion::NoStream, ActualVersion::At)
    }
}

impl fmt::Display for ActualVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActualVersion::NoStream => f.write_str("no stream"),
            ActualVersion::At(v) => write!(f, "version {v}"),
        }
    }
}

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

/// An append: events for one or more streams, committed together or not at all.
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

    /// The streams, in order.
    pub fn streams(&self) -> &[StreamAppend] {
        &self.streams
    }

    /// Takes the streams out of the request.
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
    /// ids, limits and metadata. Every store calls this before touching
    /// storage.
    pub fn check(&self, limits: &Limits) -> Result<(), AppendError> {
        if self.streams.is_empty() {
            return Err(AppendError::Empty { stream: None });
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

    /// Decides whether this request was already committed, given what the
    /// store holds under its event ids (`stored[i]` for the i-th event in
    /// commit order, `None` when that id is not stored).
    ///
    /// - no id stored: [`Replay::New`], go ahead and append;
    /// - every id stored, each in this request's stream, at consecutive
    ///   versions in this order, with the same content: [`Replay::Committed`]
    ///   with the original result; write nothing;
    /// - some ids stored: [`AppendError::PartialDuplicate`];
    /// - every id stored but elsewhere or different: [`AppendError::EventIdReused`].
    pub fn replay_of(&self, stored: Vec<Option<RecordedEvent>>) -> Result<Replay, AppendError> {
        let total = stored.len();
        let already: Vec<EventId> = stored.iter().flatten().map(|e| e.event_id).collect();
        if already.is_empty() {
            return Ok(Replay::New);
        }
        if already.len() < total {
            return Err(AppendError::PartialDuplicate {
                already_stored: already,
                total,
            });
        }
        let mut stored = stored.into_iter().flatten();
        let mut recorded = Vec::with_capacity(total);
        for s in &self.streams {
            let mut previous: Option<u64> = None;
            for event in &s.events {
                // Lengths match: `stored` has one entry per event, all `Some`.
                let Some(found) = stored.next() else {
                    return Err(AppendError::EventIdReused {
                        event_id: event.event_id(),
                    });
                };
                let in_place =
                    found.stream_id == s.stream && previous.is_none_or(|p| found.version == p + 1);
                if !in_place || !event.same_content_as(&found) {
                    return Err(AppendError::EventIdReused {
                        event_id: event.event_id(),
                    });
                }
                previous = Some(found.version);
                recorded.push(found);
            }
        }
        Ok(Replay::Committed(AppendOutcome::new(recorded)))
    }
}

/// Whether an append is new or a retry of one already committed.
#[derive(Debug)]
pub enum Replay {
    /// None of its ids are stored.
    New,
    /// It was committed before; this is the original result.
    Committed(AppendOutcome),
}

/// What an append recorded, in commit order.
#[derive(Debug, Clone, PartialEq)]
pub struct AppendOutcome {
    events: Vec<RecordedEvent>,
}

impl AppendOutcome {
    /// Wraps the recorded events of one append, in commit order.
    pub fn new(events: Vec<RecordedEvent>) -> Self {
        AppendOutcome { events }
    }

    /// The recorded events, in commit order.
    pub fn events(&self) -> &[RecordedEvent] {
        &self.events
    }

    /// The recorded events, owned.
    pub fn into_events(self) -> Vec<RecordedEvent> {
        self.events
    }

    /// The position of the first event.
    pub fn first_position(&self) -> Option<Position> {
        self.events.first().map(|e| e.position)
    }

    /// The position of the last event: wait for this to see the append.
    pub fn last_position(&self) -> Option<Position> {
        self.events.last().map(|e| e.position)
    }

    /// The stream's version after the append, if the append wrote to it.
    pub fn stream_version(&self, stream: &StreamId) -> Option<u64> {
        self.events
            .iter()
            .rev()
            .find(|e| &e.stream_id == stream)
            .map(|e| e.version)
    }

    /// Positions of the events, by event id.
    pub fn positions(&self) -> HashMap<EventId, Position> {
        self.events
            .iter()
            .map(|e| (e.event_id, e.position))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::Payload;
    use std::error::Error;

    fn event() -> NewEvent {
        NewEvent::new("Happened", 1, Payload::from_json("{}").expect("valid")).expect("valid")
    }

    fn stream(s: &str) -> StreamId {
        StreamId::new(s).expect("valid")
    }

    #[test]
    fn exact_zero_means_no_stream() {
        let s = stream("a-1");
        assert!(ExpectedVersion::Exact(0).check(&s, None).is_ok());
        assert!(ExpectedVersion::Exact(0).check(&s, Some(1)).is_err());
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
