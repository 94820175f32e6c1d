//! Snapshots: a shortcut for loading long streams.
//!
//! A snapshot is an aggregate's state as of one stream version, stored with
//! the version of the state's own schema ([`crate::Aggregate::STATE_VERSION`]).
//! Loading starts from the newest snapshot and replays only the events after
//! it; the result is the same as replaying the whole stream. A snapshot of an
//! older state schema, or one that does not decode, is ignored: the stream is
//! replayed and a fresh snapshot written. Snapshots are a cache: losing them
//! loses nothing.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::BackendError;
use crate::event::Timestamp;
use crate::id::StreamId;
use crate::payload::Payload;

/// An aggregate's state as of one stream version.
#[derive(Clone, PartialEq)]
pub struct Snapshot {
    /// The stream.
    pub stream_id: StreamId,
    /// The stream version the state reflects.
    pub version: u64,
    /// The version of the state's schema that wrote it.
    pub state_version: u32,
    /// The state, as JSON.
    pub state: Payload,
    /// When it was taken.
    pub taken_at: Timestamp,
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("stream_id", &self.stream_id)
            .field("version", &self.version)
            .field("state_version", &self.state_version)
            .field("state", &self.state)
            .finish()
    }
}

/// Why a snapshot could not be saved or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// A stored snapshot row is unreadable.
    #[error("stored snapshot of stream {stream} is corrupt: {reason}")]
    Corrupt {
        /// The stream.
        stream: StreamId,
        /// What is wrong (never the content).
        reason: String,
    },
    /// The store could not do its job.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Where snapshots are kept: one per stream, the newest.
///
/// 1. `load_snapshot` returns the snapshot with the highest version saved
///    for the stream, or `None`.
/// 2. `save_snapshot` replaces the stream's snapshot unless the stored one
///    has a higher version.
#[async_trait]
pub trait SnapshotStore: Send + Sync {
    /// Saves a snapshot.
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), SnapshotError>;

    /// The newest snapshot of a stream.
    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, SnapshotError>;
}

#[async_trait]
impl<S: SnapshotStore + ?Sized> SnapshotStore for Arc<S> {
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), SnapshotError> {
        (**self).save_snapshot(snapshot).await
    }
    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, SnapshotError> {
        (**self).load_snapshot(stream).await
    }
}

/// What a snapshot policy decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SnapshotDue {
    /// The stream's version now.
    pub version: u64,
    /// The version of the last snapshot (0 if none).
    pub last_snapshot: u64,
}

/// When the repository takes a snapshot.
#[derive(Clone)]
pub struct SnapshotPolicy {
    rule: Rule,
}

#[derive(Clone)]
enum Rule {
    Every(u64),
    When(Arc<dyn Fn(SnapshotDue) -> bool + Send + Sync>),
}

impl fmt::Debug for SnapshotPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rule {
            Rule::Every(n) => write!(f, "SnapshotPolicy::every({n})"),
            Rule::When(_) => f.write_str("SnapshotPolicy::when(..)"),
        }
    }
}

impl SnapshotPolicy {
    /// A snapshot once `n` events have been recorded since the last one
    /// (`n` of 0 is taken as 1).
    pub fn every(n: u64) -> Self {
        SnapshotPolicy {
            rule: Rule::Every(n.max(1)),
        }
    }

    /// A snapshot whenever `due` says so.
    pub fn when(due: impl Fn(SnapshotDue) -> bool + Send + Sync + 'static) -> Self {
        SnapshotPolicy {
            rule: Rule::When(Arc::new(due)),
        }
    }

    /// Whether a stream should be snapshotted now.
    pub(crate) fn is_due(&self, due: SnapshotDue) -> bool {
        if due.version <= due.last_snapshot {
            return false;
        }
        match &self.rule {
            Rule::Every(n) => due.version - due.last_snapshot >= *n,
            Rule::When(f) => f(due),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn due(version: u64, last_snapshot: u64) -> SnapshotDue {
        SnapshotDue {
            version,
            last_snapshot,
        }
    }

    #[test]
    fn every_n_is_due_once_n_events_passed_since_the_last_snapshot() {
        let p = SnapshotPolicy::every(10);
        assert!(!p.is_due(due(9, 0)));
        assert!(p.is_due(due(10, 0)));
        assert!(p.is_due(due(12, 0)));
        assert!(!p.is_due(due(11, 10)));
        assert!(p.is_due(due(20, 10)));
        assert!(!p.is_due(due(25, 25)), "nothing new since the snapshot");
        assert!(SnapshotPolicy::every(0).is_due(due(1, 0)));
    }

    #[test]
    fn when_asks_the_function() {
        let p = SnapshotPolicy::when(|d| d.version - d.last_snapshot > 2);
        assert!(!p.is_due(due(2, 0)));
        assert!(p.is_due(due(3, 0)));
    }
}
