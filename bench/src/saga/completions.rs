//! When each transfer completed: the store the saga runs on, noting the
//! moment each append that ends a transfer (its credit) is acknowledged.
//!
//! The saga's own status cannot say it: its checkpoint is published once
//! per batch of up to 1,000 events, which react one by one, so a credit
//! committed early in a batch would be seen as late as the batch's end,
//! and a transfer's completion is the reaction to its debit, whose
//! position the requester never learns. Reading the log for the credits
//! while the saga runs would contend with it for the two cores and the
//! database. Noting the acknowledgement where it happens costs a lock and
//! a push per transfer, and times the credit exactly as the saga sees it
//! committed.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use annals::projections::async_trait;
use annals::sqlite::SqliteStore;
use annals::store::ReplayEvent;
use annals::{
    AppendError, AppendOutcome, AppendRequest, BackendError, Checkpoint, CheckpointStore,
    EventStore, HeadWatch, Page, Position, ReadAll, ReadError, ReadStream, RecordedEvent,
    SkippedEvent, StreamId,
};

use super::transfers::{Transfers, COMPLETED};
use annals::projections::saga::Saga;

/// Transfers by number, with the moment their completing append was
/// acknowledged.
pub(crate) type Completed = Vec<(usize, Instant)>;

/// An annals store that notes each transfer's completion; everything else
/// goes straight through.
#[derive(Clone)]
pub(crate) struct Completions {
    store: SqliteStore,
    completed: Arc<Mutex<Completed>>,
}

impl Completions {
    pub(crate) fn new(store: SqliteStore) -> Self {
        Completions {
            store,
            completed: Arc::default(),
        }
    }

    /// The transfers completed so far.
    pub(crate) fn completed(&self) -> Completed {
        self.completed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn note(&self, outcome: &AppendOutcome, at: Instant) {
        let ended = outcome.events().iter().filter_map(|event| {
            let ends = event.stream_id.category() == Transfers::NAME
                && event.event_type.as_str() == COMPLETED;
            ends.then(|| event.stream_id.id().parse::<usize>().ok())
                .flatten()
        });
        let ended: Vec<_> = ended.map(|n| (n, at)).collect();
        if !ended.is_empty() {
            self.completed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(ended);
        }
    }
}

#[async_trait]
impl EventStore for Completions {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, AppendError> {
        let outcome = self.store.append(request).await?;
        self.note(&outcome, Instant::now());
        Ok(outcome)
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        read: ReadStream,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        self.store.read_stream(stream, read).await
    }

    async fn read_stream_for_replay(
        &self,
        stream: &StreamId,
        read: ReadStream,
    ) -> Result<Vec<ReplayEvent>, ReadError> {
        self.store.read_stream_for_replay(stream, read).await
    }

    async fn read_all(&self, read: ReadAll) -> Result<Page, ReadError> {
        self.store.read_all(read).await
    }

    async fn head(&self) -> Result<Position, ReadError> {
        self.store.head().await
    }

    fn watch_head(&self) -> HeadWatch {
        self.store.watch_head()
    }
}

#[async_trait]
impl CheckpointStore for Completions {
    async fn load_checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, BackendError> {
        self.store.load_checkpoint(name).await
    }

    async fn save_checkpoint(
        &self,
        name: &str,
        checkpoint: Checkpoint,
        skipped: &[SkippedEvent],
    ) -> Result<(), BackendError> {
        self.store.save_checkpoint(name, checkpoint, skipped).await
    }

    async fn skipped_events(&self, name: &str) -> Result<Vec<SkippedEvent>, BackendError> {
        self.store.skipped_events(name).await
    }

    async fn reset_checkpoint(&self, name: &str) -> Result<(), BackendError> {
        self.store.reset_checkpoint(name).await
    }
}
