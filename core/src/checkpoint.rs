//! Checkpoints: how far a reader of the global log has got, kept by name.
//!
//! A follower of the log (a projection, a saga) handles events in position
//! order and remembers the position it has read through. A checkpoint
//! records that position together with the id of the event stored there,
//! so that a follower coming back can tell whether the log it left is
//! still the log it finds: if the position is now beyond the head, or holds
//! another event, commits it had read were lost (relaxed durability and a
//! power loss hand their positions out again) and following on would skip
//! the new events at those positions.
//!
//! A follower that keeps its own state outside the store's database can
//! only be at least once: it may handle an event and crash before its
//! checkpoint is saved. The position of each event is then the key to
//! dedupe with.

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::BackendError;
use crate::event::{EventId, Position, Timestamp};
use crate::id::EventType;

/// How far a named follower has read the global log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// Every event up to and including this position has been handled (or
    /// did not match the follower's filter).
    pub position: Position,
    /// The id of the event stored at `position`, when there is one
    /// (`None` at [`Position::START`], or where a backend's positions have a
    /// gap).
    pub event_id: Option<EventId>,
    /// The version of the code that built what the checkpoint tracks (a
    /// projection's version), so that a change of version can be noticed.
    pub version: u32,
}

impl Checkpoint {
    /// The checkpoint of a follower that has read nothing yet.
    pub fn start(version: u32) -> Self {
        Checkpoint {
            position: Position::START,
            event_id: None,
            version,
        }
    }
}

/// An event a follower gave up on and recorded instead of handling it, so
/// that its checkpoint could move on. Never holds the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedEvent {
    /// Where it is in the global log.
    pub position: Position,
    /// Its id.
    pub event_id: EventId,
    /// Its stored type.
    pub event_type: EventType,
    /// What went wrong, as the handler reported it.
    pub error: String,
    /// When it was skipped.
    pub skipped_at: Timestamp,
}

/// Where followers of the log keep their checkpoints, by name.
///
/// 1. `load_checkpoint` returns the checkpoint last saved under the name,
///    exactly, or `None` if none was saved (or it was reset).
/// 2. `save_checkpoint` moves the name's checkpoint forward and records the
///    skipped events given, in one step: both or neither. A checkpoint at or
///    past the stored position replaces it; one below it is ignored (a
///    follower that lags behind another never moves it back; resetting is
///    the one way back). Recording an event that is already recorded for
///    the name keeps the first record.
/// 3. `skipped_events` lists the name's skipped events in position order.
/// 4. `reset_checkpoint` forgets the name's checkpoint and skipped events;
///    other names are untouched.
#[async_trait]
pub trait CheckpointStore: Send + Sync {
    /// The checkpoint saved under `name`.
    async fn load_checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, BackendError>;

    /// Moves `name`'s checkpoint forward to `checkpoint` (a lower one is
    /// ignored), and records `skipped` events with it.
    async fn save_checkpoint(
        &self,
        name: &str,
        checkpoint: Checkpoint,
        skipped: &[SkippedEvent],
    ) -> Result<(), BackendError>;

    /// The events `name` skipped, oldest position first.
    async fn skipped_events(&self, name: &str) -> Result<Vec<SkippedEvent>, BackendError>;

    /// Forgets `name`'s checkpoint and skipped events.
    async fn reset_checkpoint(&self, name: &str) -> Result<(), BackendError>;
}

#[async_trait]
impl<S: CheckpointStore + ?Sized> CheckpointStore for Arc<S> {
    async fn load_checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, BackendError> {
        (**self).load_checkpoint(name).await
    }
    async fn save_checkpoint(
        &self,
        name: &str,
        checkpoint: Checkpoint,
        skipped: &[SkippedEvent],
    ) -> Result<(), BackendError> {
        (**self).save_checkpoint(name, checkpoint, skipped).await
    }
    async fn skipped_events(&self, name: &str) -> Result<Vec<SkippedEvent>, BackendError> {
        (**self).skipped_events(name).await
    }
    async fn reset_checkpoint(&self, name: &str) -> Result<(), BackendError> {
        (**self).reset_checkpoint(name).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keeps [`CheckpointStore`] object-safe: this fails to compile otherwise.
    #[allow(dead_code)]
    fn checkpoint_store_is_object_safe(store: &dyn CheckpointStore) -> &dyn CheckpointStore {
        store
    }
}
