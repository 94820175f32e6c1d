//! The two schedulers, and the handle to running handlers: their counts,
//! waits, dead letters and stop.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use annals_core::{
    BackendError, EventStore, HandlerRequest, HandlerStore, HeadWatch, Position, RequestCounts,
    RequestFilter, RequestId, StoreClosed, Timestamp,
};
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{watch, Notify};
use tokio::task::{JoinHandle, JoinSet};

use crate::handlers::error::{HandlerRunError, HandlersWaitError};
use crate::handlers::executor::{Executor, Stats};
use crate::handlers::processor::{Processed, Processor};
use crate::saga::Clock;

/// What the schedulers report.
#[derive(Debug, Clone, Default)]
pub(crate) struct State {
    /// Every handler has stored its requests through here.
    pub(crate) processed: Position,
    /// The failure that stopped a part, if any.
    pub(crate) failure: Option<HandlerRunError>,
    pub(crate) stopped: bool,
}

/// What the schedulers and the handle share.
pub(crate) struct Shared {
    pub(crate) state: watch::Sender<State>,
    pub(crate) stop: watch::Sender<bool>,
    /// Requests were made or requeued: executors look at once.
    pub(crate) work: Notify,
    pub(crate) stats: Arc<Stats>,
}

impl Shared {
    pub(crate) fn new(stats: Arc<Stats>) -> Arc<Self> {
        Arc::new(Shared {
            state: watch::channel(State::default()).0,
            stop: watch::channel(false).0,
            work: Notify::new(),
            stats,
        })
    }

    fn fail(&self, error: HandlerRunError) {
        tracing::error!(%error, "durable handlers stopped");
        self.state.send_modify(|s| {
            s.failure.get_or_insert(error);
        });
    }
}

/// Settings both schedulers use.
#[derive(Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) workers: usize,
    pub(crate) poll_interval: Duration,
    pub(crate) grace: Duration,
}

/// How many executions ended how, since the handlers started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Executions {
    /// The handler succeeded.
    pub succeeded: u64,
    /// The handler failed (or panicked), and the request is due again.
    pub retried: u64,
    /// The request died: its last allowed failure, or a permanent one.
    pub died: u64,
    /// The handler panicked (counted in `retried` or `died` as well).
    pub panicked: u64,
    /// Given back unfinished when the executor stopped.
    pub released: u64,
    /// Finished after the claim was lost to another executor (its outcome
    /// was not stored).
    pub lost: u64,
}

/// Durable handlers' counts: the work waiting, and what was done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandlerCounts {
    /// Events committed past the processor's position.
    pub unprocessed: u64,
    /// Requests by status, in the store (every handler's, every process').
    pub requests: RequestCounts,
    /// This process' executions by outcome.
    pub executions: Executions,
    /// Time spent in handlers by this process' executions.
    pub execution_time: Duration,
}

/// The dead letters (and every other request) of a store's handlers: list
/// them, requeue them, discard them. Works with or without running
/// handlers.
#[derive(Clone)]
pub struct DeadLetters<S> {
    store: S,
    clock: Arc<dyn Clock>,
    shared: Option<Arc<Shared>>,
}

impl<S: HandlerStore> DeadLetters<S> {
    /// The requests of `store`, on the system clock.
    pub fn new(store: S) -> Self {
        DeadLetters {
            store,
            clock: Arc::new(crate::saga::SystemClock),
            shared: None,
        }
    }

    pub(crate) fn of(store: S, clock: Arc<dyn Clock>, shared: Arc<Shared>) -> Self {
        DeadLetters {
            store,
            clock,
            shared: Some(shared),
        }
    }

    /// The requests `filter` matches (`RequestFilter::dead()` for the dead
    /// letters), each with its error history.
    pub async fn list(&self, filter: &RequestFilter) -> Result<Vec<HandlerRequest>, BackendError> {
        self.store.list_requests(filter, self.clock.now()).await
    }

    /// Makes dead request `id` pending again, due now.
    pub async fn requeue(&self, id: RequestId) -> Result<bool, BackendError> {
        Ok(self.requeue_all(&RequestFilter::all().id(id)).await? == 1)
    }

    /// Makes every dead request `filter` matches pending again; returns
    /// how many.
    pub async fn requeue_all(&self, filter: &RequestFilter) -> Result<u64, BackendError> {
        let count = self
            .store
            .requeue_requests(filter, self.clock.now())
            .await?;
        if let Some(shared) = &self.shared {
            shared.work.notify_one();
        }
        Ok(count)
    }

    /// Gives up on dead request `id`, recording why; `false` if it is not
    /// dead.
    pub async fn discard(&self, id: RequestId, reason: &str) -> Result<bool, BackendError> {
        self.store
            .discard_request(id, reason, self.clock.now())
            .await
    }
}

/// Durable handlers running in the background. Dropping it stops them
/// (handlers in flight are told to stop and their claims expire);
/// [`RunningHandlers::stop`] stops them and waits, releasing what did not
/// finish within the grace period.
pub struct RunningHandlers<S> {
    store: S,
    clock: Arc<dyn Clock>,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl<S> Drop for RunningHandlers<S> {
    fn drop(&mut self) {
        self.shared.stop.send_replace(true);
    }
}

impl<S: EventStore + HandlerStore + Clone + 'static> RunningHandlers<S> {
    /// Counts of events and requests waiting, and of executions so far.
    pub async fn counts(&self) -> Result<HandlerCounts, BackendError> {
        counts(&self.store, &self.shared, self.clock.now()).await
    }

    /// The failure that stopped the processor or the executor, if any.
    pub fn failure(&self) -> Option<HandlerRunError> {
        self.shared.state.borrow().failure.clone()
    }

    /// The position through which every handler has its requests.
    pub fn processed(&self) -> Position {
        self.shared.state.borrow().processed
    }

    /// The dead letters, and every other request.
    pub fn dead_letters(&self) -> DeadLetters<S> {
        DeadLetters::of(self.store.clone(), self.clock.clone(), self.shared.clone())
    }

    /// Waits until every committed event has its requests and no request
    /// is pending or running: each is done or dead. Returns the failure of
    /// the processor or executor if one fails first.
    pub async fn wait_settled(&self) -> Result<(), HandlersWaitError> {
        loop {
            let mut state = self.shared.state.subscribe();
            {
                let now = state.borrow_and_update();
                if let Some(failure) = &now.failure {
                    return Err(HandlersWaitError::Failed(failure.clone()));
                }
                if now.stopped {
                    return Err(HandlersWaitError::Stopped);
                }
            }
            let head = self
                .store
                .head()
                .await
                .map_err(|e| HandlersWaitError::Failed(HandlerRunError::Read(e)))?;
            if self.processed() >= head {
                let unsettled = self.store.unsettled_requests().await.map_err(|e| {
                    HandlersWaitError::Failed(HandlerRunError::backend("counting requests", e))
                })?;
                if unsettled == 0 {
                    return Ok(());
                }
            }
            tokio::select! {
                _ = state.changed() => {}
                () = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
    }

    /// [`RunningHandlers::wait_settled`], giving up after `timeout`.
    pub async fn wait_settled_within(&self, timeout: Duration) -> Result<(), HandlersWaitError> {
        tokio::time::timeout(timeout, self.wait_settled())
            .await
            .unwrap_or(Err(HandlersWaitError::TimedOut))
    }

    /// Stops the processor and executors: no new claims; handlers in
    /// flight are told to stop ([`Attempt::cancelled`](crate::handlers::Attempt::cancelled))
    /// and given the grace period; those still running are dropped and
    /// their requests released, due at once, for the next executor.
    pub async fn stop(mut self) {
        self.shared.stop.send_replace(true);
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
    }
}

async fn counts<S: EventStore + HandlerStore>(
    store: &S,
    shared: &Shared,
    now: Timestamp,
) -> Result<HandlerCounts, BackendError> {
    let requests = store.request_counts(now).await?;
    let head = store
        .head()
        .await
        .map_err(|e| BackendError::new(annals_core::BackendErrorKind::Other, e.to_string()))?;
    let processed = shared.state.borrow().processed;
    let stats = &shared.stats;
    let get = |n: &std::sync::atomic::AtomicU64| n.load(Ordering::Relaxed);
    Ok(HandlerCounts {
        unprocessed: head.0.saturating_sub(processed.0),
        requests,
        executions: Executions {
            succeeded: get(&stats.succeeded),
            retried: get(&stats.retried),
            died: get(&stats.died),
            panicked: get(&stats.panicked),
            released: get(&stats.released),
            lost: get(&stats.lost),
        },
        execution_time: Duration::from_micros(get(&stats.micros)),
    })
}

/// What one round of the cooperative scheduler did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// Stored events read by the processor.
    pub events: usize,
    /// Requests it handed to the store: one per matching (handler,
    /// event), counted even when the store already held it (a request is
    /// stored once, however often it is handed over).
    pub requests: usize,
    /// Requests executed (whatever their outcome).
    pub executed: usize,
}

impl Progress {
    fn add(&mut self, processed: Processed) {
        self.events += processed.events;
        self.requests += processed.requests;
    }

    /// Whether the round did anything.
    pub fn did_work(&self) -> bool {
        self.events > 0 || self.executed > 0
    }
}

/// The cooperative scheduler: one loop that processes the log, then runs
/// the due requests (up to the worker count at once, in this task), and
/// again. For small deployments, and for tests, where
/// [`Cooperative::run_until_idle`] with a manual clock makes every retry
/// deterministic.
pub struct Cooperative<S> {
    processor: Processor<S>,
    executor: Arc<Executor<S>>,
    shared: Arc<Shared>,
    settings: Settings,
    /// The earliest retry this loop scheduled.
    next_due: Option<Timestamp>,
}

impl<S: EventStore + HandlerStore + Clone + 'static> Cooperative<S> {
    pub(crate) fn new(
        processor: Processor<S>,
        executor: Executor<S>,
        shared: Arc<Shared>,
        settings: Settings,
    ) -> Self {
        Cooperative {
            processor,
            executor: Arc::new(executor),
            shared,
            settings,
            next_due: None,
        }
    }

    /// One round: stores the requests of every committed event, then runs
    /// one claim's worth of due requests to their end.
    pub async fn run_once(&mut self) -> Result<Progress, HandlerRunError> {
        let mut progress = Progress::default();
        loop {
            let processed = self.processor.step().await?;
            progress.add(processed);
            let position = self.processor.position();
            self.shared.state.send_if_modified(|s| {
                let moved = s.processed != position;
                s.processed = position;
                moved
            });
            if !processed.full {
                break;
            }
        }
        let claimed = self.executor.claim(self.settings.workers).await?;
        progress.executed = claimed.len();
        let mut runs: FuturesUnordered<_> =
            claimed.into_iter().map(|r| self.executor.run(r)).collect();
        while let Some(result) = runs.next().await {
            if let Some(due) = result? {
                self.next_due = Some(self.next_due.map_or(due, |d| d.min(due)));
            }
        }
        Ok(progress)
    }

    /// Runs rounds until one finds nothing to do: every committed event
    /// has its requests and no request is due now (retries due later
    /// wait; advance the clock and call again). Returns what was done.
    pub async fn run_until_idle(&mut self) -> Result<Progress, HandlerRunError> {
        let mut total = Progress::default();
        loop {
            let round = self.run_once().await?;
            total.events += round.events;
            total.requests += round.requests;
            total.executed += round.executed;
            if !round.did_work() {
                return Ok(total);
            }
        }
    }

    /// Counts of events and requests waiting, and of executions so far.
    pub async fn counts(&self) -> Result<HandlerCounts, BackendError> {
        counts(
            &self.executor.store,
            &self.shared,
            self.executor.clock.now(),
        )
        .await
    }

    /// The dead letters, and every other request.
    pub fn dead_letters(&self) -> DeadLetters<S> {
        DeadLetters::of(
            self.executor.store.clone(),
            self.executor.clock.clone(),
            self.shared.clone(),
        )
    }

    /// Runs the loop in a task of its own, until stopped: rounds while
    /// there is work, then a wait for a commit (the head watch, with a
    /// poll for commits it cannot see), the next retry, or a requeue.
    pub fn start(mut self) -> RunningHandlers<S> {
        let shared = self.shared.clone();
        let store = self.executor.store.clone();
        let clock = self.executor.clock.clone();
        let task = tokio::spawn(async move {
            let mut stop = self.shared.stop.subscribe();
            let mut head = self.executor.store.watch_head();
            loop {
                if *stop.borrow() {
                    break;
                }
                let round = tokio::select! {
                    round = self.run_once() => round,
                    _ = stop.changed() => break,
                };
                match round {
                    Ok(progress) if progress.did_work() => continue,
                    Ok(_) => {}
                    Err(error) => {
                        self.shared.fail(error);
                        break;
                    }
                }
                let due = self.next_due.take();
                let clock = self.executor.clock.clone();
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = head_moved(&mut head) => {}
                    () = self.shared.work.notified() => {}
                    () = sleep_until(&*clock, due) => {}
                    () = tokio::time::sleep(self.settings.poll_interval) => {}
                }
            }
            self.executor.cancel.send_replace(true);
            self.shared.state.send_modify(|s| s.stopped = true);
        });
        RunningHandlers {
            store,
            clock,
            shared,
            tasks: vec![task],
        }
    }
}

/// Waits until the head moves past where it stands now; fails once the
/// store is closed.
async fn head_moved(watch: &mut HeadWatch) -> Result<Position, StoreClosed> {
    let now = watch.current();
    watch.wait_past(now).await
}

/// Waits until `due`, or forever without one.
async fn sleep_until(clock: &dyn Clock, due: Option<Timestamp>) {
    match due {
        Some(due) => clock.sleep_until(due).await,
        None => std::future::pending().await,
    }
}

/// Starts the concurrent scheduler: the processor in one task, the
/// executor with its pool of workers in another.
pub(crate) fn start_concurrent<S: EventStore + HandlerStore + Clone + 'static>(
    mut processor: Processor<S>,
    executor: Executor<S>,
    shared: Arc<Shared>,
    settings: Settings,
) -> RunningHandlers<S> {
    let store = executor.store.clone();
    let clock = executor.clock.clone();
    let processing = {
        let shared = shared.clone();
        let store = store.clone();
        tokio::spawn(async move {
            let mut stop = shared.stop.subscribe();
            let mut head = store.watch_head();
            loop {
                if *stop.borrow() {
                    break;
                }
                let step = tokio::select! {
                    step = processor.step() => step,
                    _ = stop.changed() => break,
                };
                let processed = match step {
                    Ok(processed) => processed,
                    Err(error) => {
                        shared.fail(error);
                        break;
                    }
                };
                let position = processor.position();
                shared.state.send_if_modified(|s| {
                    let moved = s.processed != position;
                    s.processed = position;
                    moved
                });
                if processed.requests > 0 {
                    shared.work.notify_one();
                }
                if processed.full {
                    continue;
                }
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = head_moved(&mut head) => {}
                    () = tokio::time::sleep(settings.poll_interval) => {}
                }
            }
        })
    };
    let executing = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let executor = Arc::new(executor);
            if let Err(error) = execute(&executor, &shared, settings).await {
                shared.fail(error);
            }
        })
    };
    let stopping = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let _ = processing.await;
            let _ = executing.await;
            shared.state.send_modify(|s| s.stopped = true);
        })
    };
    RunningHandlers {
        store,
        clock,
        shared,
        tasks: vec![stopping],
    }
}

/// The executor's loop: keeps up to `workers` requests running, renews
/// their claims, and on stop gives them the grace period, then releases
/// what is left.
async fn execute<S: EventStore + HandlerStore + Clone + 'static>(
    executor: &Arc<Executor<S>>,
    shared: &Shared,
    settings: Settings,
) -> Result<(), HandlerRunError> {
    let mut stop = shared.stop.subscribe();
    let mut running: JoinSet<Result<Option<Timestamp>, HandlerRunError>> = JoinSet::new();
    let mut ids: std::collections::HashMap<tokio::task::Id, RequestId> = Default::default();
    let mut next_due: Option<Timestamp> = None;
    let renew_every = (executor.lease / 3).max(Duration::from_millis(10));
    let mut renew = tokio::time::interval(renew_every);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let result = loop {
        if *stop.borrow() {
            break Ok(());
        }
        let free = settings.workers.saturating_sub(running.len());
        let mut claimed_all = false;
        if free > 0 {
            let claimed = match executor.claim(free).await {
                Ok(claimed) => claimed,
                Err(error) => break Err(error),
            };
            // All asked for: more may be due, so claim again as soon as a
            // worker is free rather than wait for a wake-up.
            claimed_all = claimed.len() == free;
            for request in claimed {
                let id = request.id;
                let executor = executor.clone();
                let handle = running.spawn(async move { executor.run(request).await });
                ids.insert(handle.id(), id);
            }
        }
        let due = next_due;
        tokio::select! {
            _ = stop.changed() => break Ok(()),
            Some(done) = running.join_next_with_id(), if !running.is_empty() => {
                match done {
                    Ok((task, result)) => {
                        ids.remove(&task);
                        match result {
                            Ok(Some(at)) => next_due = Some(next_due.map_or(at, |d| d.min(at))),
                            Ok(None) => {}
                            Err(error) => break Err(error),
                        }
                    }
                    Err(join) => {
                        ids.remove(&join.id());
                    }
                }
            }
            () = shared.work.notified(), if !claimed_all => {}
            () = sleep_until(&*executor.clock, due), if !claimed_all => { next_due = None; }
            () = tokio::time::sleep(settings.poll_interval), if !claimed_all => {}
            _ = renew.tick(), if !ids.is_empty() => {
                let held: Vec<RequestId> = ids.values().copied().collect();
                if let Err(error) = executor.renew(&held).await {
                    break Err(error);
                }
            }
        }
    };
    // Stopping: tell the handlers, give them the grace period, then drop
    // the rest and release their requests.
    executor.cancel.send_replace(true);
    let grace = tokio::time::sleep(settings.grace);
    tokio::pin!(grace);
    while !running.is_empty() {
        tokio::select! {
            Some(done) = running.join_next_with_id() => {
                if let Ok((task, _)) = done {
                    ids.remove(&task);
                } else if let Err(join) = done {
                    ids.remove(&join.id());
                }
            }
            () = &mut grace => break,
        }
    }
    running.abort_all();
    while running.join_next().await.is_some() {}
    for id in ids.into_values() {
        if let Err(error) = executor.release(id).await {
            tracing::warn!(%error, request = %id, "releasing a claim failed; it expires instead");
        }
    }
    result
}
