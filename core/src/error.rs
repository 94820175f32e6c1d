//! The errors of the store contract.
//!
//! Each operation family has its own enum: [`AppendError`], [`ReadError`],
//! [`DecodeError`]. [`BackendError`] is the store's own trouble (a closed
//! database, a full disk); its [`BackendErrorKind`] tells a caller whether a
//! retry can help.

use std::fmt;

use crate::append::{ActualVersion, ExpectedVersion};
use crate::event::{EventId, InvalidMetadata, Position};
use crate::id::StreamId;

/// Why an append was refused. In every case nothing was written, except
/// [`BackendErrorKind::OutcomeUnknown`], where a retry with the same event ids
/// is safe and tells which it was.
#[derive(Debug, thiserror::Error)]
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
    /// The stream would pass the largest version the store can hold.
    #[error("stream {stream} would pass the largest version the store can hold")]
    VersionOverflow {
        /// The stream.
        stream: StreamId,
    },
    /// The store could not do its job; `kind` says whether retrying can help.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// A stored row cannot be turned into a [`crate::RecordedEvent`]: the
    /// database was changed behind the store's back. Reads of other
    /// positions still work.
    #[error("stored event at position {position} is corrupt: {reason}")]
    Corrupt {
        /// Where the bad row is.
        position: Position,
        /// What is wrong with it (never its content).
        reason: String,
    },
    /// A stored event could not be brought up to date by the upcasters.
    #[error("stream {stream} version {version} (position {position}): {source}")]
    Upcast {
        /// The event's stream.
        stream: StreamId,
        /// The event's version in the stream.
        version: u64,
        /// The event's position in the log.
        position: Position,
        /// What failed.
        source: crate::upcast::UpcastError,
    },
    /// The store could not do its job; `kind` says whether retrying can help.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Why a stored event could not become a typed domain event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The code knows no event of this type: an event written by newer code,
    /// or a type that was removed without an upcaster.
    #[error("unknown event type {event_type:?}")]
    UnknownEventType {
        /// The stored type name.
        event_type: String,
    },
    /// The stored schema version is newer than the code knows: deploy the
    /// newer code; never drop the event.
    #[error("event type {event_type:?} has schema version {found}, newer than the newest known ({newest})")]
    FutureSchemaVersion {
        /// The stored type name.
        event_type: String,
        /// The stored schema version.
        found: u32,
        /// The newest version the code knows.
        newest: u32,
    },
    /// The stored schema version is older than the code's and no upcaster
    /// brings it up to date.
    #[error("event type {event_type:?} has schema version {found}, older than the current ({current}), and no upcaster brings it up to date")]
    OutdatedSchemaVersion {
        /// The stored type name.
        event_type: String,
        /// The stored schema version.
        found: u32,
        /// The version the code reads.
        current: u32,
    },
    /// The payload does not fit the type (the message names the mismatch,
    /// never the stored value).
    #[error(
        "payload of {event_type:?} (schema version {schema_version}) does not decode: {reason}"
    )]
    InvalidPayload {
        /// The stored type name.
        event_type: String,
        /// The stored schema version.
        schema_version: u32,
        /// What did not fit.
        reason: String,
    },
}

impl DecodeError {
    /// Builds [`DecodeError::InvalidPayload`] from a serde_json error, without
    /// quoting the payload.
    pub fn invalid_payload(
        event_type: &str,
        schema_version: u32,
        error: &serde_json::Error,
    ) -> Self {
        DecodeError::InvalidPayload {
            event_type: event_type.to_owned(),
            schema_version,
            reason: crate::payload::redacted_message(error),
        }
    }
}

/// The store's own trouble, with the cause kept for logs.
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct BackendError {
    /// What went wrong, for callers to match on.
    pub kind: BackendErrorKind,
    /// A short description (never payloads or metadata).
    pub message: String,
    /// The underlying error.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl BackendError {
    /// A backend error with a message and no cause.
    pub fn new(kind: BackendErrorKind, message: impl Into<String>) -> Self {
        BackendError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// A backend error keeping its cause.
    pub fn with_source(
        kind: BackendErrorKind,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        BackendError {
            kind,
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// The store is closed or its writer stopped.
    pub fn closed() -> Self {
        BackendError::new(BackendErrorKind::Closed, "the store is closed")
    }
}

/// The kinds of backend trouble.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BackendErrorKind {
    /// The store was closed or its writer stopped; open it again.
    Closed,
    /// Another writer holds the database; retrying later can succeed.
    Busy,
    /// The disk or the database's size limit is full; free space, then retry.
    StorageFull,
    /// The database is read-only.
    ReadOnly,
    /// A commit failed in a way that leaves its outcome unknown; a retry with
    /// the same event ids is safe and tells which it was.
    OutcomeUnknown,
    /// The database is damaged.
    Corrupt,
    /// The file is not an annals database.
    NotAnnalsDatabase,
    /// The database was written by a newer annals.
    TooNew,
    /// The server cannot be reached.
    Unavailable,
    /// The operation took longer than allowed.
    Timeout,
    /// An I/O error.
    Io,
    /// Anything else.
    Other,
}

impl BackendErrorKind {
    /// Whether retrying the same operation later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            BackendErrorKind::Busy
                | BackendErrorKind::OutcomeUnknown
                | BackendErrorKind::Unavailable
                | BackendErrorKind::Timeout
                | BackendErrorKind::Io
        )
    }
}

impl fmt::Display for BackendErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendErrorKind::Closed => "store closed",
            BackendErrorKind::Busy => "database busy",
            BackendErrorKind::StorageFull => "storage full",
            BackendErrorKind::ReadOnly => "database is read-only",
            BackendErrorKind::OutcomeUnknown => {
                "outcome unknown (retrying with the same event ids is safe)"
            }
            BackendErrorKind::Corrupt => "database corrupt",
            BackendErrorKind::NotAnnalsDatabase => "not an annals database",
            BackendErrorKind::TooNew => "database written by a newer annals",
            BackendErrorKind::Unavailable => "database unavailable",
            BackendErrorKind::Timeout => "timed out",
            BackendErrorKind::Io => "I/O error",
            BackendErrorKind::Other => "backend error",
        })
    }
}

/// The store closed while a caller waited on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the store is closed")]
pub struct StoreClosed;
