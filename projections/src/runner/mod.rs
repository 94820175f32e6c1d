//! The runner: projections catch up, follow live commits, report, wait,
//! rebuild, and stop.

#[cfg(feature = "postgres")]
mod postgres;
pub(crate) mod source;
pub(crate) mod target;
pub(crate) mod task;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use annals_core::upcast::Upcasters;
use annals_core::{
    BackendError, CheckpointStore, EventSet, EventStore, Position, ReadError, SkippedEvent,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::error::{run_failure, StartError, WaitError};
use crate::projection::{FailurePolicy, Projection, SqliteProjection, UnknownEvents};
use crate::saga::deadlines::{fire, IndexEvent};
use crate::saga::target::saga_store;
use crate::saga::{Clock, DeadlineIndex, Deadlines, Saga, SagaTarget, SystemClock};
use crate::sqlite::ReadModel;
use crate::status::{ProjectionState, ProjectionStatus, RebuildProgress};
use crate::target::Target;
use source::Source;
use target::{SqliteTarget, StoreTarget};
use task::{Context, Follower, ProgressFn, Request};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// How to list one projection's skipped events, wherever they are kept.
type ListSkipped =
    Arc<dyn Fn() -> BoxFuture<Result<Vec<SkippedEvent>, BackendError>> + Send + Sync>;

/// Whether an entry has work due that the log does not show yet.
type DueFn = Arc<dyn Fn() -> bool + Send + Sync>;

/// A projection registered with the runner, not yet started.
struct Entry {
    name: &'static str,
    version: u32,
    skipped: ListSkipped,
    /// Whether it has work that is due but not in the log yet (a saga's
    /// due deadlines).
    due: Option<DueFn>,
    start: Box<dyn FnOnce(Context) -> JoinHandle<()>>,
}

/// Several projections over one event store, before they start.
///
/// ```
/// use annals_core::testkit::bank::{Account, AccountCommand, AccountEvent};
/// use annals_core::{CommandContext, InMemoryStore, Repository};
/// use annals_projections::{Envelope, HandlerError, Projection, Projections};
///
/// #[derive(Default)]
/// struct Deposits(u64);
///
/// #[async_trait::async_trait]
/// impl Projection for Deposits {
///     type Events = AccountEvent;
///     const NAME: &'static str = "deposits";
///     const IN_MEMORY: bool = true;
///     async fn handle(&mut self, event: &Envelope<AccountEvent>) -> Result<(), HandlerError> {
///         if let AccountEvent::Deposited { amount } = event.event {
///             self.0 += amount;
///         }
///         Ok(())
///     }
///     async fn reset(&mut self) -> Result<(), HandlerError> {
///         self.0 = 0;
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = InMemoryStore::new();
/// let running = Projections::new(store.clone()).projection(Deposits::default()).start()?;
/// let accounts = Repository::<Account, _>::new(store)?;
/// let opened = accounts
///     .execute("42", AccountCommand::Open { owner: "ada".into() }, &CommandContext::new())
///     .await?;
/// // Read your writes: returns once the projection has handled the command's events.
/// running.wait_for("deposits", opened.position()).await?;
/// assert_eq!(running.status()[0].checkpoint, opened.position());
/// running.stop().await;
/// # Ok(()) }
/// ```
pub struct Projections<S> {
    store: S,
    entries: Vec<Entry>,
    invalid: Option<StartError>,
    batch_size: usize,
    poll_interval: Duration,
    progress: Option<ProgressFn>,
    clock: Arc<dyn Clock>,
    jitter_seed: Option<u64>,
}

impl<S> Projections<S>
where
    S: EventStore + Clone + 'static,
{
    /// No projections yet, over `store`. Defaults: batches of 1,000
    /// events, a poll for commits the head watch cannot see every second,
    /// no rebuild progress callback, the system's clock, backoff jitter
    /// seeded by the time.
    pub fn new(store: S) -> Self {
        Projections {
            store,
            entries: Vec::new(),
            invalid: None,
            batch_size: 1_000,
            poll_interval: Duration::from_secs(1),
            progress: None,
            clock: Arc::new(SystemClock),
            jitter_seed: None,
        }
    }

    /// Seeds the random jitter of retry backoffs, so that a test sees the
    /// same pauses on every run (default: seeded by the time).
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.jitter_seed = Some(seed);
        self
    }

    /// The clock sagas' deadlines follow (default: the system's). Tests
    /// give a [`ManualClock`](crate::saga::ManualClock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Adds a read model in the SQLite database at `path` (created if
    /// missing), updated exactly once.
    pub fn sqlite<P: SqliteProjection>(self, path: impl AsRef<Path>, projection: P) -> Self {
        let path: PathBuf = path.as_ref().to_path_buf();
        let skipped_path = path.clone();
        let skipped: ListSkipped = Arc::new(move || {
            let path = skipped_path.clone();
            Box::pin(async move {
                tokio::task::spawn_blocking(move || ReadModel::<P>::skipped_events(&path))
                    .await
                    .map_err(|join| {
                        BackendError::new(
                            annals_core::BackendErrorKind::Other,
                            format!("listing skipped events failed: {join}"),
                        )
                    })?
            })
        });
        let policy = projection.on_failure();
        let unknown = projection.on_unknown_event();
        let target = SqliteTarget::new(path, projection);
        self.register::<P::Events>(P::NAME, P::VERSION, policy, unknown, skipped, move |_| {
            (Box::new(target) as Box<dyn Target<_>>, None)
        })
    }

    /// How many events a batch holds at most (default 1,000): each batch
    /// is one transaction of an SQLite read model and one checkpoint.
    pub fn batch_size(mut self, events: usize) -> Self {
        self.batch_size = events;
        self
    }

    /// How often a live projection looks for commits even when the head
    /// watch did not wake it (default one second): the fallback for commits
    /// a store's watch cannot see.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Calls `report` with a rebuild's progress after each of its batches.
    pub fn on_rebuild_progress(
        mut self,
        report: impl Fn(&RebuildProgress) + Send + Sync + 'static,
    ) -> Self {
        self.progress = Some(Arc::new(report));
        self
    }

    fn register<E: EventSet>(
        mut self,
        name: &'static str,
        version: u32,
        policy: crate::projection::FailurePolicy,
        unknown: crate::projection::UnknownEvents,
        skipped: ListSkipped,
        target: impl FnOnce(&Context) -> (Box<dyn Target<E>>, Option<JoinHandle<()>>) + 'static,
    ) -> Self {
        if let Err(error) = check_name(name) {
            self.invalid.get_or_insert(error);
        }
        if self.entries.iter().any(|e| e.name == name) {
            self.invalid.get_or_insert(StartError::DuplicateName {
                name: name.to_owned(),
            });
        }
        let upcasters = match E::upcasters(Upcasters::builder()).build() {
            Ok(upcasters) => upcasters,
            Err(source) => {
                self.invalid.get_or_insert(StartError::InvalidUpcasters {
                    projection: name,
                    source,
                });
                return self;
            }
        };
        let store = self.store.clone();
        let start = Box::new(move |ctx: Context| {
            let source = Source::<S, E>::new(store, name, upcasters, unknown, ctx.batch_size);
            // A task that works beside the follower (a saga's deadlines)
            // is joined with it, so that a stop waits for both.
            let (target, companion) = target(&ctx);
            let ctx = Context { policy, ..ctx };
            let follower = tokio::spawn(Follower::new(source, target, ctx).run());
            match companion {
                None => follower,
                Some(companion) => tokio::spawn(async move {
                    let _ = follower.await;
                    let _ = companion.await;
                }),
            }
        });
        self.entries.push(Entry {
            name,
            version,
            skipped,
            due: None,
            start,
        });
        self
    }

    /// Starts every projection, each in a task of its own, on the current
    /// tokio runtime.
    ///
    /// Fails if a name is invalid or taken twice, a setting is out of
    /// range, or an event set's upcasters are invalid; everything that
    /// happens later is reported by [`Running::status`] and by the waits.
    pub fn start(self) -> Result<Running, StartError> {
        if let Some(error) = self.invalid {
            return Err(error);
        }
        if self.batch_size == 0 || self.batch_size > annals_core::store::MAX_READ_LIMIT {
            return Err(StartError::InvalidOptions {
                setting: "batch_size",
                reason: "must be between 1 and 10,000",
            });
        }
        if self.poll_interval.is_zero() {
            return Err(StartError::InvalidOptions {
                setting: "poll_interval",
                reason: "must be more than zero",
            });
        }
        let (stop, stop_rx) = watch::channel(false);
        let mut handles = Vec::with_capacity(self.entries.len());
        let mut tasks = Vec::with_capacity(self.entries.len());
        for entry in self.entries {
            let (status, status_rx) = watch::channel(ProjectionStatus {
                name: entry.name,
                version: entry.version,
                checkpoint: Position::START,
                head: Position::START,
                lag: 0,
                state: ProjectionState::Starting,
                events_per_second: 0.0,
            });
            let (requests, requests_rx) = mpsc::channel(8);
            let ctx = Context {
                name: entry.name,
                version: entry.version,
                policy: crate::projection::FailurePolicy::Stop,
                status,
                stop: stop_rx.clone(),
                requests: requests_rx,
                poll_interval: self.poll_interval,
                progress: self.progress.clone(),
                batch_size: self.batch_size,
                clock: self.clock.clone(),
                jitter_seed: self.jitter_seed,
            };
            tasks.push((entry.start)(ctx));
            handles.push(Handle {
                name: entry.name,
                status: status_rx,
                requests,
                skipped: entry.skipped,
                due: entry.due,
            });
        }
        let store = self.store;
        Ok(Running {
            projections: handles,
            head: Arc::new(move || {
                let store = store.clone();
                Box::pin(async move { store.head().await })
            }),
            stop,
            tasks,
        })
    }
}

impl<S> Projections<S>
where
    S: EventStore + CheckpointStore + Clone + 'static,
{
    /// Adds a projection updated at least once, its checkpoint kept in the
    /// event store.
    pub fn projection<P: Projection>(self, projection: P) -> Self {
        let skipped = list_skipped(&self.store, P::NAME);
        let policy = projection.on_failure();
        let unknown = projection.on_unknown_event();
        let target = StoreTarget::new(projection, self.store.clone());
        self.register::<P::Events>(P::NAME, P::VERSION, policy, unknown, skipped, move |_| {
            (Box::new(target) as Box<dyn Target<_>>, None)
        })
    }

    /// Adds a saga: each event it reacts to is one unit of work, committed
    /// with the saga's tracking position in one append. Its deadlines are
    /// followed by a second entry, `{NAME}.deadlines`, which lives in
    /// memory and fires them when due; a deadline that cannot be fired is
    /// listed among that entry's skipped events. A saga whose
    /// [`DEADLINES`](Saga::DEADLINES) is `false` has no such entry.
    pub fn saga<G: Saga>(self, saga: G) -> Self {
        if let Err(error) = annals_core::store::check_category(G::NAME) {
            let mut this = self;
            this.invalid.get_or_insert(StartError::InvalidName {
                name: G::NAME.to_owned(),
                reason: "a saga's name is the category of its instances' streams, so it has no '-'",
            });
            let _ = error;
            return this;
        }
        let saga = Arc::new(saga);
        let policy = saga.on_failure();
        let deadlines = Deadlines::new();
        // One name per saga type, made once: a bounded leak.
        let index: &'static str = Box::leak(format!("{}.deadlines", G::NAME).into_boxed_str());
        let (store, reacting) = (self.store.clone(), saga.clone());
        let this = self.register::<G::Events>(
            G::NAME,
            1,
            policy,
            UnknownEvents::Skip,
            list_skipped(&store, G::NAME),
            move |ctx| {
                let target = SagaTarget::new(
                    reacting,
                    saga_store(&store),
                    store.clone(),
                    ctx.clock.clone(),
                );
                (Box::new(target) as Box<dyn Target<_>>, None)
            },
        );
        if !G::DEADLINES {
            return this;
        }
        let (store, firing, known) = (this.store.clone(), saga, deadlines.clone());
        let due = deadlines.clone();
        let mut this = this.register::<IndexEvent<G>>(
            index,
            1,
            FailurePolicy::Stop,
            UnknownEvents::Skip,
            list_skipped(&store, index),
            move |ctx| {
                deadlines.use_clock(ctx.clock.clone());
                let task = fire(
                    index,
                    firing,
                    saga_store(&store),
                    store.clone(),
                    deadlines,
                    ctx.clock.clone(),
                    ctx.stop.clone(),
                );
                let firing = tokio::spawn(task);
                (
                    Box::new(DeadlineIndex::<G>::new(known)) as Box<dyn Target<_>>,
                    Some(firing),
                )
            },
        );
        if let Some(entry) = this.entries.iter_mut().find(|e| e.name == index) {
            entry.due = Some(Arc::new(move || due.any_due()));
        }
        this
    }
}

/// Lists the skipped events kept under `name` in the event store.
fn list_skipped<S: CheckpointStore + Clone + 'static>(
    store: &S,
    name: &'static str,
) -> ListSkipped {
    let store = store.clone();
    Arc::new(move || {
        let store = store.clone();
        Box::pin(async move { store.skipped_events(name).await })
    })
}

/// Checks a projection's name: it keys checkpoints and names files.
pub(crate) fn check_name(name: &str) -> Result<(), StartError> {
    let invalid = |reason| StartError::InvalidName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("it is empty"));
    }
    if name.len() > 64 {
        return Err(invalid("it is longer than 64 bytes"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(invalid(
            "only ASCII letters, digits, '_', '-' and '.' are allowed",
        ));
    }
    if name.starts_with('.') {
        return Err(invalid("it starts with '.'"));
    }
    Ok(())
}

/// One running projection, as the handle sees it.
struct Handle {
    name: &'static str,
    status: watch::Receiver<ProjectionStatus>,
    requests: mpsc::Sender<Request>,
    skipped: ListSkipped,
    due: Option<DueFn>,
}

/// Waits until a projection's status passes `done` or it stops, and
/// returns that status (the last one published, if its task is gone).
async fn settle(
    status: &watch::Receiver<ProjectionStatus>,
    done: impl Fn(&ProjectionStatus) -> bool,
) -> ProjectionStatus {
    let mut status = status.clone();
    let settled = status
        .wait_for(|s| done(s) || s.state.is_stopped())
        .await
        .map(|s| s.clone());
    settled.unwrap_or_else(|_| status.borrow().clone())
}

type HeadFn = Arc<dyn Fn() -> BoxFuture<Result<Position, ReadError>> + Send + Sync>;

/// Running projections: their status, waits for read-your-writes,
/// rebuilds, and a clean stop.
///
/// Dropping it stops every projection after its current batch; each keeps
/// its checkpoint. [`Running::stop`] does the same and waits for them.
pub struct Running {
    projections: Vec<Handle>,
    head: HeadFn,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    fn handle(&self, name: &str) -> Result<&Handle, WaitError> {
        self.projections
            .iter()
            .find(|h| h.name == name)
            .ok_or_else(|| WaitError::UnknownProjection {
                name: name.to_owned(),
            })
    }

    /// One projection's status.
    pub fn status_of(&self, name: &str) -> Option<ProjectionStatus> {
        self.handle(name).ok().map(|h| h.status.borrow().clone())
    }

    /// Every projection's status, in the order they were added.
    pub fn status(&self) -> Vec<ProjectionStatus> {
        self.projections
            .iter()
            .map(|h| h.status.borrow().clone())
            .collect()
    }

    /// Waits until projection `name` has handled everything up to
    /// `position` (the position a command's result carries, say). Returns
    /// the projection's failure the moment it fails, and
    /// [`WaitError::Stopped`] if it stops first.
    pub async fn wait_for(&self, name: &str, position: Position) -> Result<(), WaitError> {
        let handle = self.handle(name)?;
        let last = settle(&handle.status, |s| s.checkpoint >= position).await;
        if last.checkpoint >= position {
            return Ok(());
        }
        match last.state {
            ProjectionState::Failed(failure) => Err(WaitError::Failed(failure)),
            _ => Err(WaitError::Stopped {
                projection: handle.name,
                checkpoint: last.checkpoint,
                position,
            }),
        }
    }

    /// [`Running::wait_for`], giving up with [`WaitError::TimedOut`] after
    /// `timeout`.
    pub async fn wait_for_within(
        &self,
        name: &str,
        position: Position,
        timeout: Duration,
    ) -> Result<(), WaitError> {
        let handle = self.handle(name)?;
        match tokio::time::timeout(timeout, self.wait_for(name, position)).await {
            Ok(result) => result,
            Err(_) => Err(WaitError::TimedOut {
                projection: handle.name,
                checkpoint: handle.status.borrow().checkpoint,
                position,
                waited: timeout,
            }),
        }
    }

    /// Waits until every projection has handled the log up to its head as
    /// it is now and has nothing else to do: a rebuild in progress (after a
    /// version change, say) is waited for too. The first failure ends the
    /// wait.
    pub async fn wait_idle(&self) -> Result<(), WaitError> {
        let head = self.head_now().await?;
        for handle in &self.projections {
            let idle = |s: &ProjectionStatus| {
                s.checkpoint >= head && matches!(s.state, ProjectionState::Live)
            };
            let last = settle(&handle.status, idle).await;
            if idle(&last) {
                continue;
            }
            return Err(match last.state {
                ProjectionState::Failed(failure) => WaitError::Failed(failure),
                _ => WaitError::Stopped {
                    projection: handle.name,
                    checkpoint: last.checkpoint,
                    position: head,
                },
            });
        }
        Ok(())
    }

    /// Waits until nothing is left to do: every projection is idle at the
    /// head, no saga has a deadline due, and the log stopped moving while
    /// it looked (a saga's reactions append events that it, or another
    /// projection, then reads). For tests and examples that drive a
    /// process to its end; with commands still arriving it waits for a
    /// quiet moment.
    pub async fn wait_settled(&self) -> Result<(), WaitError> {
        loop {
            let before = self.head_now().await?;
            self.wait_idle().await?;
            let due = self
                .projections
                .iter()
                .any(|h| h.due.as_ref().is_some_and(|due| due()));
            if !due && self.head_now().await? == before {
                return Ok(());
            }
            if due {
                // The deadline's reaction is running: look again shortly.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }

    /// [`Running::wait_settled`], giving up with [`WaitError::TimedOut`]
    /// after `timeout` (naming the projection furthest behind).
    pub async fn wait_settled_within(&self, timeout: Duration) -> Result<(), WaitError> {
        match tokio::time::timeout(timeout, self.wait_settled()).await {
            Ok(settled) => settled,
            Err(_) => Err(self.timed_out(timeout)),
        }
    }

    /// The timeout of a wait for every projection: it names the one
    /// furthest behind.
    fn timed_out(&self, waited: Duration) -> WaitError {
        let (projection, checkpoint, position) = self
            .status()
            .into_iter()
            .min_by_key(|s| s.checkpoint)
            .map_or(("*", Position::START, Position::START), |s| {
                (s.name, s.checkpoint, s.head)
            });
        WaitError::TimedOut {
            projection,
            checkpoint,
            position,
            waited,
        }
    }

    async fn head_now(&self) -> Result<Position, WaitError> {
        (self.head)().await.map_err(|e| {
            WaitError::Failed(run_failure(crate::error::RunError::Read {
                projection: "*",
                source: e,
            }))
        })
    }

    /// [`Running::wait_idle`], giving up with [`WaitError::TimedOut`] after
    /// `timeout`.
    pub async fn wait_idle_within(&self, timeout: Duration) -> Result<(), WaitError> {
        match tokio::time::timeout(timeout, self.wait_idle()).await {
            Ok(idle) => idle,
            Err(_) => Err(self.timed_out(timeout)),
        }
    }

    /// Rebuilds projection `name` from the start of the log and returns
    /// once the rebuilt model serves. An SQLite read model is rebuilt in a
    /// shadow database while the old one serves; another projection is
    /// reset and replays. A failed projection starts again this way.
    pub async fn rebuild(&self, name: &str) -> Result<(), WaitError> {
        let handle = self.handle(name)?;
        let (reply, answer) = oneshot::channel();
        let stopped = || WaitError::Stopped {
            projection: handle.name,
            checkpoint: handle.status.borrow().checkpoint,
            position: handle.status.borrow().head,
        };
        handle
            .requests
            .send(Request::Rebuild(reply))
            .await
            .map_err(|_| stopped())?;
        match answer.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(failure)) => Err(WaitError::Failed(failure)),
            Err(_) => Err(stopped()),
        }
    }

    /// The events projection `name` skipped under
    /// [`FailurePolicy::SkipAndRecord`](crate::FailurePolicy::SkipAndRecord),
    /// oldest first.
    pub async fn skipped_events(&self, name: &str) -> Result<Vec<SkippedEvent>, SkippedError> {
        let handle = self
            .handle(name)
            .map_err(|_| SkippedError::UnknownProjection {
                name: name.to_owned(),
            })?;
        (handle.skipped)().await.map_err(SkippedError::Backend)
    }

    /// Stops every projection after its current batch and waits for them;
    /// each keeps its checkpoint.
    pub async fn stop(mut self) {
        self.stop.send_replace(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// Why skipped events could not be listed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SkippedError {
    /// No projection has this name.
    #[error("no projection is named {name:?}")]
    UnknownProjection {
        /// The name asked for.
        name: String,
    },
    /// The store or the read model failed.
    #[error(transparent)]
    Backend(BackendError),
}
