//! A store wrapper that counts what goes through it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;

use crate::store::{ReplayEvent, Snapshot};
use crate::{
    AppendError, AppendOutcome, AppendRequest, EventStore, HeadWatch, Page, Position, ReadAll,
    ReadError, ReadStream, RecordedEvent, SnapshotError, SnapshotStore, StreamId,
};

/// How many calls went through a [`CountingStore`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counts {
    /// Appends.
    pub appends: u64,
    /// Reads of the store's events: stream reads (whole or for replay),
    /// log reads and head reads.
    pub reads: u64,
    /// Snapshot loads and saves.
    pub snapshots: u64,
}

#[derive(Default)]
struct Counters {
    appends: AtomicU64,
    reads: AtomicU64,
    snapshots: AtomicU64,
}

/// A store that counts the calls made through it, to prove what a code
/// path does not do (a cached command reads nothing).
///
/// ```
/// use annals_core::testkit::CountingStore;
/// use annals_core::{EventStore, InMemoryStore};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), annals_core::ReadError> {
/// let store = CountingStore::new(InMemoryStore::new());
/// store.head().await?;
/// assert_eq!(store.counts().reads, 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct CountingStore<S> {
    inner: S,
    counters: Arc<Counters>,
}

impl<S> CountingStore<S> {
    /// Wraps a store; clones share the counts.
    pub fn new(inner: S) -> Self {
        CountingStore {
            inner,
            counters: Arc::default(),
        }
    }

    /// The counts so far.
    pub fn counts(&self) -> Counts {
        Counts {
            appends: self.counters.appends.load(Ordering::SeqCst),
            reads: self.counters.reads.load(Ordering::SeqCst),
            snapshots: self.counters.snapshots.load(Ordering::SeqCst),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn read(&self) {
        self.counters.reads.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl<S: EventStore> EventStore for CountingStore<S> {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, AppendError> {
        self.counters.appends.fetch_add(1, Ordering::SeqCst);
        self.inner.append(request).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        read: ReadStream,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        self.read();
        self.inner.read_stream(stream, read).await
    }

    async fn read_stream_for_replay(
        &self,
        stream: &StreamId,
        read: ReadStream,
    ) -> Result<Vec<ReplayEvent>, ReadError> {
        self.read();
        self.inner.read_stream_for_replay(stream, read).await
    }

    async fn read_all(&self, read: ReadAll) -> Result<Page, ReadError> {
        self.read();
        self.inner.read_all(read).await
    }

    async fn head(&self) -> Result<Position, ReadError> {
        self.read();
        self.inner.head().await
    }

    fn watch_head(&self) -> HeadWatch {
        self.inner.watch_head()
    }
}

#[async_trait]
impl<S: SnapshotStore> SnapshotStore for CountingStore<S> {
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), SnapshotError> {
        self.counters.snapshots.fetch_add(1, Ordering::SeqCst);
        self.inner.save_snapshot(snapshot).await
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, SnapshotError> {
        self.counters.snapshots.fetch_add(1, Ordering::SeqCst);
        self.inner.load_snapshot(stream).await
    }
}
