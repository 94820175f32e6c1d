//! The store as SQLite read models follow it.

use annals::sqlite::SqliteStore;
use annals::{
    AppendError, AppendOutcome, AppendRequest, BackendError, BackendErrorKind, Checkpoint,
    CheckpointStore, EventStore, HeadWatch, Page, Position, ReadAll, ReadError, ReadStream,
    RecordedEvent, SkippedEvent, StreamId,
};
use async_trait::async_trait;

/// The annals store, for a runner of SQLite read models only.
///
/// The runner asks for a [`CheckpointStore`] as well as the log, for the
/// projections that keep their checkpoint in the event store; an SQLite
/// read model keeps its checkpoint in its own database and never asks.
/// The SQLite store keeps no checkpoints, so this one refuses each call,
/// and passes every read of the log straight to the store.
#[derive(Clone)]
pub(crate) struct ModelsOnly(pub(crate) SqliteStore);

fn no_checkpoints() -> BackendError {
    BackendError::new(
        BackendErrorKind::Other,
        "the bench's store keeps no checkpoints: its read models keep their own",
    )
}

#[async_trait]
impl EventStore for ModelsOnly {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, AppendError> {
        self.0.append(request).await
    }
    async fn read_stream(
        &self,
        stream: &StreamId,
        read: ReadStream,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        self.0.read_stream(stream, read).await
    }
    async fn read_stream_for_replay(
        &self,
        stream: &StreamId,
        read: ReadStream,
    ) -> Result<Vec<annals::store::ReplayEvent>, ReadError> {
        self.0.read_stream_for_replay(stream, read).await
    }
    async fn read_all(&self, read: ReadAll) -> Result<Page, ReadError> {
        self.0.read_all(read).await
    }
    async fn head(&self) -> Result<Position, ReadError> {
        self.0.head().await
    }
    fn watch_head(&self) -> HeadWatch {
        self.0.watch_head()
    }
}

#[async_trait]
impl CheckpointStore for ModelsOnly {
    async fn load_checkpoint(&self, _: &str) -> Result<Option<Checkpoint>, BackendError> {
        Err(no_checkpoints())
    }
    async fn save_checkpoint(
        &self,
        _: &str,
        _: Checkpoint,
        _: &[SkippedEvent],
    ) -> Result<(), BackendError> {
        Err(no_checkpoints())
    }
    async fn skipped_events(&self, _: &str) -> Result<Vec<SkippedEvent>, BackendError> {
        Err(no_checkpoints())
    }
    async fn reset_checkpoint(&self, _: &str) -> Result<(), BackendError> {
        Err(no_checkpoints())
    }
}
