//! Why an append was refused.

use crate::append::expected::{ActualVersion, ExpectedVersion};
use crate::error::BackendError;
use crate::event::{EventId, InvalidMetadata, Position};
use crate::id::{InvalidName, StreamId};

/// Why an append was refused. In every case nothing was written, except
/// [`BackendErrorKind::OutcomeUnknown`](crate::BackendErrorKind::OutcomeUnknown),
/// where a retry with the same event ids is safe and tells which it was.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// The stream moved on after it was read: reload, decide again, retry.
    #[error("stream {stream}: expected {expected}, found {actual}")]
    Conflict {
        /// The stream whose version did not match.
        stream: StreamId,
        /// What the append expected.
        expected: ExpectedVersion,
        /// What the store had.
        actual: ActualVersion,
    },
    /// Some but not all event ids are already stored: the request is malformed.
    #[error("{count} of {total} event ids are already stored", count = .already_stored.len())]
    PartialDuplicate {
        /// The ids that are already stored.
        already_stored: Vec<EventId>,
        /// How many events the request had.
        total: usize,
    },
    /// An event id is already stored with another stream, version or content:
    /// a retry that changed, or an id used twice by mistake.
    #[error("event id {event_id} is already stored with a different stream, version or content")]
    EventIdReused {
        /// The reused id.
        event_id: EventId,
    },
    /// The same event id appears twice in one request.
    #[error("event id {event_id} appears twice in one append")]
    DuplicateEventId {
        /// The repeated id.
        event_id: EventId,
    },
    /// A multi-stream append names one stream twice.
    #[error("stream {stream} appears twice in one append")]
    DuplicateStream {
        /// The repeated stream.
        stream: StreamId,
    },
    /// The append has no events, or names a stream with no events.
    #[error("append has no events{}", .stream.as_ref().map(|s| format!(" for stream {s}")).unwrap_or_default())]
    Empty {
        /// The stream that had no events, for a multi-stream append.
        stream: Option<StreamId>,
    },
    /// One payload is larger than the store allows.
    #[error("payload of event {event_id} is {size} bytes, more than the maximum of {max}")]
    PayloadTooLarge {
        /// The event.
        event_id: EventId,
        /// Its payload size in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The append holds more events than the store allows in one append.
    #[error("append has {count} events, more than the maximum of {max}")]
    TooManyEvents {
        /// Events in the append.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The append's payloads add up to more bytes than the store allows.
    #[error("append has {bytes} payload bytes, more than the maximum of {max}")]
    TooManyBytes {
        /// Payload bytes in the append.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// An event's metadata cannot be stored.
    #[error("event {event_id}: {source}")]
    InvalidMetadata {
        /// The event.
        event_id: EventId,
        /// What was wrong.
        source: InvalidMetadata,
    },
    /// The checkpoint an append tracks is already at or past the position
    /// it asks for: another runner already committed this reaction, or this
    /// one did and is retrying: nothing was written; move on.
    ///
    /// A retry of an append that was committed (all its event ids stored)
    /// is not refused: it gets the original result.
    #[error("checkpoint {name:?} is at {stored}, at or past the requested {requested}")]
    AlreadyTracked {
        /// The checkpoint's name.
        name: String,
        /// The position stored under the name.
        stored: Position,
        /// The first position the append covers (the position it would
        /// have set, for an append that covers one).
        requested: Position,
    },
    /// The name of the checkpoint an append tracks breaks the naming rules
    /// (empty, too long, control or invisible characters, surrounding
    /// whitespace): nothing was written; fix the name.
    #[error("{source}")]
    InvalidCheckpointName {
        /// What was wrong with the name.
        source: InvalidName,
    },
    /// The stream would pass the largest version a store can hold
    /// ([`MAX_VERSION`](crate::store::MAX_VERSION)).
    #[error("stream {stream} would pass the largest version a store can hold")]
    VersionOverflow {
        /// The stream.
        stream: StreamId,
    },
    /// The store could not do its job; `kind` says whether retrying can help.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl AppendError {
    /// Whether this is a [`AppendError::Conflict`]: the one refusal a
    /// command handler usually answers by deciding again on fresh state.
    pub fn is_conflict(&self) -> bool {
        matches!(self, AppendError::Conflict { .. })
    }
}
