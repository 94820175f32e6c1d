//! A saga's tracking position only moves forward: a runner that lags
//! behind another never takes it back (and so never acts twice), and a
//! stopped saga stores the checkpoint its status reports. Each scenario
//! runs on the in-memory store and, when `ANNALS_PG_URL` names a server,
//! on PostgreSQL.

mod transfers;

use std::sync::Arc;

use annals_core::{
    AppendError, AppendOutcome, AppendRequest, BackendError, Checkpoint, CheckpointStore,
    EventStore, HeadWatch, InMemoryStore, Page, Position, ReadAll, ReadError, ReadStream,
    RecordedEvent, SkippedEvent, StreamId,
};
use annals_projections::Projections;
use tokio::sync::{Notify, Semaphore};
use transfers::{Request, Step, Transfers};

#[path = "common/postgres.rs"]
mod postgres;

use postgres::TestResult;

/// What the scenarios need of a store.
trait Store: EventStore + CheckpointStore + Clone + 'static {}

impl<S: EventStore + CheckpointStore + Clone + 'static> Store for S {}

/// A store whose appends wait at a gate until it opens.
#[derive(Clone)]
struct GatedStore<S> {
    inner: S,
    gate: Arc<Semaphore>,
    waiting: Arc<Notify>,
}

#[async_trait::async_trait]
impl<S: EventStore> EventStore for GatedStore<S> {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, AppendError> {
        self.waiting.notify_one();
        let _pass = self.gate.acquire().await.expect("gate open");
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
        self.inner.watch_head()
    }
}

#[async_trait::async_trait]
impl<S: CheckpointStore> CheckpointStore for GatedStore<S> {
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

fn request(id: &str, from: &str, to: &str, cents: u64) -> Step {
    Step::Request(Request {
        id: id.into(),
        from: from.into(),
        to: to.into(),
        cents,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_runner_never_moves_the_tracking_position_back() -> TestResult {
    a_lagging_runner_never_moves_the_tracking_position_back_on(InMemoryStore::new()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_runner_never_moves_the_tracking_position_back_on_postgres() -> TestResult {
    postgres::with_store(
        "a_lagging_runner_never_moves_the_tracking_position_back_on_postgres",
        a_lagging_runner_never_moves_the_tracking_position_back_on,
    )
    .await
}

/// A runner behind another saves its batch's checkpoint over the other's
/// tracked position, moving it back; the tracked append of a reaction the
/// other already committed is then accepted, and it acts twice.
async fn a_lagging_runner_never_moves_the_tracking_position_back_on<S: Store>(
    store: S,
) -> TestResult {
    let accounts = [
        ("a0".to_owned(), 10_000, false),
        ("a1".to_owned(), 0, false),
    ];
    transfers::open_accounts(&store, &accounts).await?;
    transfers::append_step(&store, &request("t1", "a0", "a1", 100)).await?;
    // An event the saga does not read: its batch reads through it.
    let note = annals_core::NewEvent::from_domain(
        &transfers::TransferEvent::TransferApproved,
        annals_core::Metadata::default(),
    )?;
    store
        .append(AppendRequest::to_stream(
            StreamId::new("note-1")?,
            annals_core::ExpectedVersion::Any,
            vec![note],
        ))
        .await?;
    let gated = GatedStore {
        inner: store.clone(),
        gate: Arc::new(Semaphore::new(0)),
        waiting: Arc::new(Notify::new()),
    };
    // Runner A reads [.., t1] through the note, and holds its reaction to
    // t1 at the commit.
    let lagging = Projections::new(gated.clone())
        .saga(Transfers::default())
        .start()?;
    gated.waiting.notified().await;
    // Large: debited, then waits for an approval.
    transfers::append_step(&store, &request("t2", "a0", "a1", 2_000)).await?;
    // Runner B does everything meanwhile.
    let ahead = Projections::new(store.clone())
        .saga(Transfers::default())
        .start()?;
    ahead.wait_settled().await?;
    ahead.stop().await;
    let tracked = store.load_checkpoint("transfers").await?.expect("tracked");
    gated.gate.add_permits(1_000);
    lagging.wait_settled().await?;
    lagging.stop().await;
    let debits = annals_core::testkit::read_log(&store)
        .await?
        .iter()
        .filter(|e| e.stream_id.as_str() == "account-a0")
        .filter(|e| e.event_type.as_str() == "Debited")
        .count();
    let now = store.load_checkpoint("transfers").await?.expect("tracked");
    assert!(
        now.position >= tracked.position,
        "the tracking position moved back from {} to {}",
        tracked.position,
        now.position
    );
    assert_eq!(debits, 2, "t1 and t2 debited once each");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settled_saga_stores_the_checkpoint_its_status_reports() -> TestResult {
    a_settled_saga_stores_the_checkpoint_its_status_reports_on(InMemoryStore::new()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settled_saga_stores_the_checkpoint_its_status_reports_on_postgres() -> TestResult {
    postgres::with_store(
        "a_settled_saga_stores_the_checkpoint_its_status_reports_on_postgres",
        a_settled_saga_stores_the_checkpoint_its_status_reports_on,
    )
    .await
}

/// A batch that ends with events whose reaction decided nothing (a
/// credit, read by the saga and ignored) is not saved: the stored
/// tracking position stays behind what the status reports, after a stop
/// too, and a restart runs those reactions again.
async fn a_settled_saga_stores_the_checkpoint_its_status_reports_on<S: Store>(
    store: S,
) -> TestResult {
    let accounts = [("a0".to_owned(), 1_000, false), ("a1".to_owned(), 0, false)];
    transfers::open_accounts(&store, &accounts).await?;
    transfers::append_step(&store, &request("t1", "a0", "a1", 100)).await?;
    let running = Projections::new(store.clone())
        .saga(Transfers::default())
        .start()?;
    running.wait_settled().await?;
    let status = running.status_of("transfers").expect("running").checkpoint;
    running.stop().await;
    let head = store.head().await?;
    let stored = store.load_checkpoint("transfers").await?.expect("tracked");
    assert_eq!(status, head, "the status says it handled the log");
    assert_eq!(
        stored.position, head,
        "the stored tracking position, after a clean stop"
    );
    Ok(())
}
