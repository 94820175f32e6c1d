//! Why a read failed.

use crate::error::BackendError;
use crate::event::Position;
use crate::id::StreamId;
use crate::upcaster::error::UpcastError;

/// Why a read failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// A stored row cannot be turned into a [`RecordedEvent`](crate::RecordedEvent):
    /// the database was changed behind the store's back. Reads of other
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
        source: UpcastError,
    },
    /// The store could not do its job; `kind` says whether retrying can help.
    #[error(transparent)]
    Backend(#[from] BackendError),
}
