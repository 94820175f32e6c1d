//! Commits a store's head watch cannot see (another process's, on a store
//! that watches only its own) still reach projections and the bus: they
//! look for them every poll interval.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use annals_core::testkit::bank::AccountEvent;
use annals_core::{
    AppendError, AppendOutcome, AppendRequest, BackendError, Checkpoint, CheckpointStore,
    EventStore, EventStoreExt, ExpectedVersion, HeadWatch, InMemoryStore, NewEvent, Page, Position,
    ReadAll, ReadError, ReadStream, RecordedEvent, SkippedEvent, StreamId,
};
use annals_projections::bus::EventBus;
use annals_projections::{Envelope, HandlerError, Projection, Projections};
use tokio::sync::watch;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A store whose head watch never moves: every commit is one the watch
/// cannot see.
#[derive(Clone)]
struct BlindWatch {
    inner: InMemoryStore,
    frozen: Arc<watch::Sender<Position>>,
}

impl BlindWatch {
    fn new(inner: InMemoryStore) -> Self {
        BlindWatch {
            inner,
            frozen: Arc::new(watch::channel(Position::START).0),
        }
    }
}

#[async_trait::async_trait]
impl EventStore for BlindWatch {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, AppendError> {
        self.inner.append(request).await
    }
    async fn read_stream(
        &self,
        stream: &StreamId,
        read: ReadStream,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        self.inner.read_stream(stream, read).await
    }
    async fn read_all(&self, read: ReadAll) -> Result<Page, ReadError> {
        self.inner.read_all(read).await
    }
    async fn head(&self) -> Result<Position, ReadError> {
        self.inner.head().await
    }
    fn watch_head(&self) -> HeadWatch {
        HeadWatch::new(self.frozen.subscribe())
    }
}

#[async_trait::async_trait]
impl CheckpointStore for BlindWatch {
    async fn load_checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, BackendError> {
        self.inner.load_checkpoint(name).await
    }
    async fn save_checkpoint(
        &self,
        name: &str,
        checkpoint: Checkpoint,
        skipped: &[SkippedEvent],
    ) -> Result<(), BackendError> {
        self.inner.save_checkpoint(name, checkpoint, skipped).await
    }
    async fn skipped_events(&self, name: &str) -> Result<Vec<SkippedEvent>, BackendError> {
        self.inner.skipped_events(name).await
    }
    async fn reset_checkpoint(&self, name: &str) -> Result<(), BackendError> {
        self.inner.reset_checkpoint(name).await
    }
}

/// Appends one deposit; returns its position.
async fn deposit(store: &InMemoryStore, n: u64) -> Result<Position, Box<dyn std::error::Error>> {
    let stream = StreamId::new("account-1")?;
    let event = NewEvent::from_domain(&AccountEvent::Deposited { amount: n }, Default::default())?;
    let outcome = store
        .append_to_stream(&stream, ExpectedVersion::Any, vec![event])
        .await?;
    Ok(outcome.last_position().ok_or("one event")?)
}

/// Counts the events it handles.
struct Counter(Arc<Mutex<u64>>);

#[async_trait::async_trait]
impl Projection for Counter {
    type Events = AccountEvent;
    const NAME: &'static str = "counter";
    const IN_MEMORY: bool = true;
    async fn handle(&mut self, _: &Envelope<AccountEvent>) -> Result<(), HandlerError> {
        *self.0.lock().map_err(|_| "poisoned")? += 1;
        Ok(())
    }
    async fn reset(&mut self) -> Result<(), HandlerError> {
        *self.0.lock().map_err(|_| "poisoned")? = 0;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_projection_finds_commits_its_watch_missed_by_polling() -> TestResult {
    let inner = InMemoryStore::new();
    let store = BlindWatch::new(inner.clone());
    let handled = Arc::new(Mutex::new(0));
    let running = Projections::new(store)
        .poll_interval(Duration::from_millis(20))
        .projection(Counter(handled.clone()))
        .start()?;
    running.wait_idle().await?;
    for n in 1..=3 {
        let position = deposit(&inner, n).await?;
        running
            .wait_for_within("counter", position, Duration::from_secs(10))
            .await?;
    }
    assert_eq!(*handled.lock().map_err(|_| "poisoned")?, 3);
    running.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_finds_commits_its_watch_missed_by_polling() -> TestResult {
    let inner = InMemoryStore::new();
    let bus =
        EventBus::with_poll_interval(BlindWatch::new(inner.clone()), Duration::from_millis(20));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = seen.clone();
    let _subscription = bus.subscribe("account.*", move |event| {
        let kept = kept.clone();
        async move {
            kept.lock().map_err(|_| "poisoned")?.push(event.position);
            Ok(())
        }
    })?;
    let running = bus.start().await?;
    for n in 1..=3 {
        deposit(&inner, n).await?;
    }
    for _ in 0..1_000 {
        if bus.counts().delivered == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seen = seen.lock().map_err(|_| "poisoned")?.clone();
    assert_eq!(seen, [Position(1), Position(2), Position(3)]);
    running.stop().await;
    Ok(())
}
