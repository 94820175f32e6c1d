//! Tracking: a named checkpoint that an append moves with its events.
//!
//! A saga reacts to the event at position p of the log by appending events
//! of its own. Its tracking position, the checkpoint saying how far it has
//! reacted, must move to p in the same atomic append: a crash then never
//! leaves the events without the tracking or the tracking without the
//! events, and a second runner reacting to the same event finds the
//! checkpoint already at p and is refused with
//! [`AppendError::AlreadyTracked`] instead of acting twice.

use crate::append::error::AppendError;
use crate::checkpoint::Checkpoint;
use crate::event::Position;
use crate::id::check_name;

/// A named checkpoint to set in the same atomic append as the events: see
/// [`AppendRequest::track`](crate::AppendRequest::track).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracking {
    /// The checkpoint's name, as [`CheckpointStore`](crate::CheckpointStore)
    /// knows it. It follows the rules of every name (non-empty, at most
    /// [`MAX_NAME_LEN`](crate::MAX_NAME_LEN) bytes, no control or invisible
    /// characters, no surrounding whitespace).
    pub name: String,
    /// The checkpoint the name is set to, exactly, when the append commits.
    pub checkpoint: Checkpoint,
    /// The first position the append covers: it is refused if the stored
    /// checkpoint is at or past it. The checkpoint's own position for an
    /// append that covers one position; lower for one that commits the
    /// reactions to several events at once.
    pub first: Position,
}

impl Tracking {
    /// Checks the name; the one check of tracking that needs no storage.
    pub(crate) fn check(&self) -> Result<(), AppendError> {
        check_name("checkpoint name", &self.name)
            .map_err(|source| AppendError::InvalidCheckpointName { source })
    }
}
