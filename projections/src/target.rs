//! Where a follower's batches go: what the runner's loop asks of a read
//! model, a projection, a saga or a saga's deadline index.

use annals_core::{Checkpoint, SkippedEvent};
use async_trait::async_trait;

use crate::envelope::Envelope;
use crate::error::RunError;

/// Why a batch was not applied.
pub(crate) enum ApplyError<E> {
    /// The handler failed on the event at `index`; the events come back
    /// so that the runner can hand on the part before it.
    Handler {
        events: Vec<Envelope<E>>,
        index: usize,
        error: String,
    },
    /// The store or the read model failed.
    Run(RunError),
}

#[async_trait]
pub(crate) trait Target<E: Send + Sync + 'static>: Send {
    /// Opens the target and returns its checkpoint (`None` for a new one).
    async fn open(&mut self) -> Result<Option<Checkpoint>, RunError>;

    /// Handles `events`, then saves `checkpoint` with `skipped` recorded.
    async fn apply(
        &mut self,
        events: Vec<Envelope<E>>,
        checkpoint: Checkpoint,
        skipped: Option<SkippedEvent>,
    ) -> Result<(), ApplyError<E>>;

    /// Whether a failed batch left nothing behind, so that the events
    /// before the failure must be handled again.
    fn rolls_back(&self) -> bool;

    /// Starts (or goes on with) a rebuild; returns where it stands.
    async fn begin_rebuild(&mut self) -> Result<Checkpoint, RunError>;

    /// Ends a rebuild that has caught up at `cursor`; returns the
    /// checkpoint the projection goes on from.
    async fn finish_rebuild(&mut self, cursor: Checkpoint) -> Result<Checkpoint, RunError>;
}
