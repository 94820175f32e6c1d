//! One projection's task: catch up in batches, follow live commits, apply
//! the failure policy, rebuild on a version change or on request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use annals_core::{Checkpoint, EventSet, EventStore, HeadWatch, Position, SkippedEvent, Timestamp};
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::run_failure;
use crate::error::ProjectionFailure;
use crate::error::RunError;
use crate::projection::FailurePolicy;
use crate::runner::source::{Batch, Source, Undecodable};
use crate::status::{ProjectionState, ProjectionStatus, RebuildProgress};
use crate::target::{ApplyError, Target};

/// A checkpoint that only moved over events the projection does not read
/// is saved once it is this many positions ahead of the saved one (and
/// when the projection stops): a restart then re-reads at most this much.
const SAVE_SKIPPED_RANGE_EVERY: u64 = 10_000;

/// Called with a rebuild's progress after each batch.
pub(crate) type ProgressFn = Arc<dyn Fn(&RebuildProgress) + Send + Sync>;

/// What the runner's handle asks of a projection's task.
pub(crate) enum Request {
    /// Rebuild from the start of the log; answered once swapped in.
    Rebuild(oneshot::Sender<Result<(), ProjectionFailure>>),
}

/// What a projection's task is given.
pub(crate) struct Context {
    pub(crate) name: &'static str,
    pub(crate) version: u32,
    pub(crate) policy: FailurePolicy,
    pub(crate) status: watch::Sender<ProjectionStatus>,
    pub(crate) stop: watch::Receiver<bool>,
    pub(crate) requests: mpsc::Receiver<Request>,
    pub(crate) poll_interval: Duration,
    pub(crate) batch_size: usize,
    pub(crate) progress: Option<ProgressFn>,
    pub(crate) clock: Arc<dyn crate::saga::Clock>,
    /// Seeds the backoff's jitter (for tests); the time when `None`.
    pub(crate) jitter_seed: Option<u64>,
}

/// A rebuild in progress.
struct Rebuild {
    started: Instant,
    from: Position,
}

/// Why following stopped.
enum Exit {
    Stopped,
    Failed(ProjectionFailure),
}

pub(crate) struct Follower<S, E> {
    source: Source<S, E>,
    target: Box<dyn Target<E>>,
    ctx: Context,
    head: HeadWatch,
    /// What has been handled, in the model being built.
    cursor: Checkpoint,
    /// The position last saved.
    saved: Position,
    /// What readers of the model see: behind the cursor while a shadow
    /// rebuild runs.
    serving: Position,
    rebuilding: Option<Rebuild>,
    /// Failed attempts at one position, for the retry policy.
    attempts: (Position, u32),
    /// Callers waiting for the rebuild to be swapped in.
    rebuild_waiters: Vec<oneshot::Sender<Result<(), ProjectionFailure>>>,
    per_second: f64,
    rng: SplitMix,
}

impl<S: EventStore, E: EventSet> Follower<S, E> {
    pub(crate) fn new(source: Source<S, E>, target: Box<dyn Target<E>>, ctx: Context) -> Self {
        let head = source.store.watch_head();
        let version = ctx.version;
        let rng = SplitMix::seeded(ctx.name, ctx.jitter_seed);
        Follower {
            source,
            target,
            ctx,
            head,
            cursor: Checkpoint::start(version),
            saved: Position::START,
            serving: Position::START,
            rebuilding: None,
            attempts: (Position::START, 0),
            rebuild_waiters: Vec::new(),
            per_second: 0.0,
            rng,
        }
    }

    /// Runs until stopped; a failure parks the task, reported, until it
    /// is stopped or asked to rebuild.
    pub(crate) async fn run(mut self) {
        self.publish(ProjectionState::Starting);
        let mut rebuild = match self.open().await {
            Ok(rebuild) => rebuild,
            Err(failure) => {
                if !self.park(failure).await {
                    return;
                }
                true
            }
        };
        loop {
            let exit = match self.follow(rebuild).await {
                Ok(exit) => exit,
                Err(failure) => Exit::Failed(failure),
            };
            match exit {
                Exit::Stopped => {
                    self.save_skipped_range().await;
                    self.publish(ProjectionState::Stopped);
                    return;
                }
                Exit::Failed(failure) => {
                    if !self.park(failure).await {
                        return;
                    }
                    rebuild = true;
                }
            }
        }
    }

    /// Opens the target; returns whether it must be rebuilt.
    async fn open(&mut self) -> Result<bool, ProjectionFailure> {
        let stored = self.target.open().await.map_err(run_failure)?;
        let Some(stored) = stored else {
            return Ok(false);
        };
        if stored.version != self.ctx.version {
            // Built by other code: keep serving it while a rebuild runs.
            self.serving = stored.position;
            return Ok(true);
        }
        self.source.verify(&stored).await.map_err(run_failure)?;
        self.cursor = stored;
        self.saved = stored.position;
        self.serving = stored.position;
        Ok(false)
    }

    /// Reports a failure and waits for a stop (false) or a rebuild
    /// request (true).
    async fn park(&mut self, failure: ProjectionFailure) -> bool {
        for waiter in self.rebuild_waiters.drain(..) {
            let _ = waiter.send(Err(failure.clone()));
        }
        self.publish(ProjectionState::Failed(failure));
        loop {
            if self.stop_requested() {
                return false;
            }
            tokio::select! {
                _ = self.ctx.stop.changed() => {}
                request = self.ctx.requests.recv() => match request {
                    Some(Request::Rebuild(waiter)) => {
                        self.rebuild_waiters.push(waiter);
                        self.attempts = (Position::START, 0);
                        return true;
                    }
                    None => return false,
                },
            }
        }
    }

    fn stop_requested(&self) -> bool {
        *self.ctx.stop.borrow() || self.ctx.stop.has_changed().is_err()
    }

    async fn follow(&mut self, mut rebuild: bool) -> Result<Exit, ProjectionFailure> {
        // The next batch, read while the last one was applied.
        let mut ahead: Option<Batch<E>> = None;
        loop {
            if self.stop_requested() {
                return Ok(Exit::Stopped);
            }
            while let Ok(Request::Rebuild(waiter)) = self.ctx.requests.try_recv() {
                self.rebuild_waiters.push(waiter);
                rebuild = true;
            }
            if rebuild && self.rebuilding.is_none() {
                ahead = None;
                self.begin_rebuild().await?;
            }
            rebuild = false;
            let started = Instant::now();
            let batch = match ahead.take() {
                Some(batch) => batch,
                None => self
                    .source
                    .next(self.cursor.position)
                    .await
                    .map_err(run_failure)?,
            };
            let full = batch.full;
            let (whole, next) = if self.target.rolls_back() {
                // A batch on a blocking thread runs to its end anyway.
                self.handle(batch, started).await?
            } else {
                // At least once: a stop may drop a batch in flight; its
                // checkpoint was not saved, so it is handled again later.
                let mut stop = self.ctx.stop.clone();
                tokio::select! {
                    handled = self.handle(batch, started) => handled?,
                    _ = stop.wait_for(|stop| *stop) => return Ok(Exit::Stopped),
                }
            };
            ahead = next;
            let caught_up = whole && !full;
            if !caught_up {
                continue;
            }
            if self.rebuilding.is_some() {
                self.finish_rebuild().await?;
            }
            self.publish(ProjectionState::Live);
            match self.wait_for_commits().await? {
                Some(Request::Rebuild(waiter)) => {
                    self.rebuild_waiters.push(waiter);
                    rebuild = true;
                }
                None => {}
            }
        }
    }

    /// Waits for the head to pass the cursor, for the poll interval (for
    /// commits a watch cannot see), a stop, or a request.
    async fn wait_for_commits(&mut self) -> Result<Option<Request>, ProjectionFailure> {
        let position = self.cursor.position;
        tokio::select! {
            moved = self.head.wait_past(position) => {
                moved.map_err(|_| {
                    let closed = annals_core::BackendError::closed();
                    run_failure(RunError::backend(self.ctx.name, "waiting for commits", closed))
                })?;
                Ok(None)
            }
            () = tokio::time::sleep(self.ctx.poll_interval) => Ok(None),
            _ = self.ctx.stop.changed() => Ok(None),
            request = self.ctx.requests.recv() => Ok(request),
        }
    }

    /// Applies a batch, and its failure if it stopped at one; returns
    /// whether the whole batch was handled (no failure went on) and, when
    /// the batch was full, the next one, read while this one was applied:
    /// the log is read and the model written at the same time.
    async fn handle(
        &mut self,
        batch: Batch<E>,
        started: Instant,
    ) -> Result<(bool, Option<Batch<E>>), ProjectionFailure> {
        let Batch {
            events,
            read_through,
            through_id,
            undecodable,
            full,
        } = batch;
        let mut ahead = None;
        if events.is_empty() {
            if read_through > self.cursor.position {
                // Nothing the projection reads: move on in memory, save now
                // and then.
                self.cursor.position = read_through;
                self.cursor.event_id = through_id;
                if read_through.0 - self.saved.0 >= SAVE_SKIPPED_RANGE_EVERY {
                    self.save_skipped_range().await;
                }
                self.moved();
            }
        } else {
            let checkpoint = self
                .source
                .checkpoint_at(read_through, through_id, self.ctx.version)
                .await
                .map_err(run_failure)?;
            let count = events.len();
            let apply = self.target.apply(events, checkpoint, None);
            let applied = if full && undecodable.is_none() {
                let (applied, next) = tokio::join!(apply, self.source.next(read_through));
                // A failed read is read again, and reported, next time.
                ahead = next.ok();
                applied
            } else {
                apply.await
            };
            match applied {
                Ok(()) => {
                    self.rate(count, started);
                    self.advance(checkpoint);
                }
                Err(ApplyError::Run(e)) => return Err(run_failure(e)),
                Err(ApplyError::Handler {
                    events,
                    index,
                    error,
                }) => {
                    let failed = Undecodable::at(&events[index], error);
                    self.hand_on_before(events, failed.position).await?;
                    return self.on_failure(failed).await.map(|()| (false, None));
                }
            }
        }
        match undecodable {
            Some(failed) => self.on_failure(failed).await.map(|()| (false, None)),
            None => Ok((true, ahead)),
        }
    }

    /// After a failure at `failed_at`: moves the checkpoint to just before
    /// it, handling again the events before it if the batch was rolled back.
    async fn hand_on_before(
        &mut self,
        events: Vec<crate::envelope::Envelope<E>>,
        failed_at: Position,
    ) -> Result<(), ProjectionFailure> {
        let before = Position(failed_at.0 - 1);
        let prefix: Vec<_> = if self.target.rolls_back() {
            events
                .into_iter()
                .take_while(|e| e.position < failed_at)
                .collect()
        } else {
            Vec::new()
        };
        if prefix.is_empty() && before <= self.cursor.position {
            return Ok(());
        }
        let checkpoint = self
            .source
            .checkpoint_at(before, None, self.ctx.version)
            .await
            .map_err(run_failure)?;
        match self.target.apply(prefix, checkpoint, None).await {
            Ok(()) => {
                self.advance(checkpoint);
                Ok(())
            }
            Err(ApplyError::Run(e)) => Err(run_failure(e)),
            // The handler failed earlier this time: it is not
            // deterministic. Stop there rather than guess.
            Err(ApplyError::Handler {
                events,
                index,
                error,
            }) => Err(Undecodable::at(&events[index], error).into_failure(self.ctx.name)),
        }
    }

    /// Applies the failure policy to an event that failed; `Ok` goes on.
    async fn on_failure(&mut self, failed: Undecodable) -> Result<(), ProjectionFailure> {
        let failure = failed.clone().into_failure(self.ctx.name);
        match self.ctx.policy.clone() {
            FailurePolicy::Retry { attempts, backoff } => {
                let made = if self.attempts.0 == failed.position {
                    self.attempts.1 + 1
                } else {
                    1
                };
                self.attempts = (failed.position, made);
                if made >= attempts {
                    return Err(failure);
                }
                self.publish(ProjectionState::Retrying {
                    failure,
                    attempts: made,
                });
                let pause = backoff.pause(made, self.rng.unit());
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    _ = self.ctx.stop.changed() => {}
                }
                Ok(())
            }
            FailurePolicy::SkipAndRecord => {
                let skipped = SkippedEvent {
                    position: failed.position,
                    event_id: failed.event_id,
                    event_type: failed.event_type,
                    error: failed.error,
                    skipped_at: Timestamp::now(),
                };
                let checkpoint = self
                    .source
                    .checkpoint_at(failed.position, None, self.ctx.version)
                    .await
                    .map_err(run_failure)?;
                match self
                    .target
                    .apply(Vec::new(), checkpoint, Some(skipped))
                    .await
                {
                    Ok(()) => {
                        self.advance(checkpoint);
                        Ok(())
                    }
                    Err(ApplyError::Run(e)) => Err(run_failure(e)),
                    Err(ApplyError::Handler { error, .. }) => {
                        let source = annals_core::BackendError::new(
                            annals_core::BackendErrorKind::Other,
                            error,
                        );
                        let doing = "recording a skipped event";
                        Err(run_failure(RunError::backend(self.ctx.name, doing, source)))
                    }
                }
            }
            // `Stop`, and whatever a later policy may be.
            _ => Err(failure),
        }
    }

    /// Saves a checkpoint that moved over events the projection does not
    /// read, if it is ahead of the saved one. Best effort: a failure only
    /// means a restart reads that range again.
    async fn save_skipped_range(&mut self) {
        if self.cursor.position <= self.saved {
            return;
        }
        let Ok(checkpoint) = self
            .source
            .checkpoint_at(self.cursor.position, self.cursor.event_id, self.ctx.version)
            .await
        else {
            return;
        };
        if self
            .target
            .apply(Vec::new(), checkpoint, None)
            .await
            .is_ok()
        {
            self.advance(checkpoint);
        }
    }

    async fn begin_rebuild(&mut self) -> Result<(), ProjectionFailure> {
        let from = self.target.begin_rebuild().await.map_err(run_failure)?;
        self.rebuilding = Some(Rebuild {
            started: Instant::now(),
            from: from.position,
        });
        self.cursor = from;
        self.saved = from.position;
        self.attempts = (Position::START, 0);
        if !self.target.rolls_back() {
            // Rebuilt in place: what it serves starts over.
            self.serving = from.position;
        }
        self.publish_progress();
        Ok(())
    }

    async fn finish_rebuild(&mut self) -> Result<(), ProjectionFailure> {
        let checkpoint = self
            .target
            .finish_rebuild(self.cursor)
            .await
            .map_err(run_failure)?;
        self.rebuilding = None;
        self.cursor = checkpoint;
        self.saved = checkpoint.position;
        self.serving = checkpoint.position;
        for waiter in self.rebuild_waiters.drain(..) {
            let _ = waiter.send(Ok(()));
        }
        Ok(())
    }

    fn advance(&mut self, checkpoint: Checkpoint) {
        self.cursor = checkpoint;
        self.saved = checkpoint.position;
        self.moved();
    }

    fn moved(&mut self) {
        if self.rebuilding.is_none() || !self.target.rolls_back() {
            self.serving = self.cursor.position;
        }
        self.publish_progress();
    }

    fn rate(&mut self, count: usize, started: Instant) {
        let seconds = started.elapsed().as_secs_f64();
        if seconds > 0.0 {
            // A batch holds at most a page of events: no precision is lost.
            #[allow(clippy::cast_precision_loss)]
            let count = count as f64;
            self.per_second = count / seconds;
        }
    }

    /// Publishes "catching up" (or "live" once what it serves has reached
    /// the head as last seen, so that a waiter that saw its position
    /// reached never finds the projection still catching up), or the
    /// rebuild's progress.
    fn publish_progress(&mut self) {
        let Some(rebuild) = &self.rebuilding else {
            let state = if self.serving >= self.head.current() {
                ProjectionState::Live
            } else {
                ProjectionState::CatchingUp
            };
            self.publish(state);
            return;
        };
        let head = self.head.current().max(self.cursor.position);
        let done = self.cursor.position.0.saturating_sub(rebuild.from.0);
        let total = head.0.saturating_sub(rebuild.from.0);
        let seconds = rebuild.started.elapsed().as_secs_f64();
        // Rates and estimates only: precision above 2^53 does not matter.
        #[allow(clippy::cast_precision_loss)]
        let (per_second, left) = (
            if seconds > 0.0 {
                done as f64 / seconds
            } else {
                0.0
            },
            (total - done) as f64,
        );
        let progress = RebuildProgress {
            projection: self.ctx.name,
            done,
            total,
            per_second,
            eta: (per_second > 0.0).then(|| Duration::from_secs_f64(left / per_second)),
        };
        if let Some(report) = &self.ctx.progress {
            report(&progress);
        }
        self.publish(ProjectionState::Rebuilding(progress));
    }

    fn publish(&self, state: ProjectionState) {
        let head = self.head.current();
        let checkpoint = self.serving;
        self.ctx.status.send_replace(ProjectionStatus {
            name: self.ctx.name,
            version: self.ctx.version,
            checkpoint,
            head,
            lag: head.0.saturating_sub(checkpoint.0),
            state,
            events_per_second: self.per_second,
        });
    }
}

/// A small pseudo-random generator for backoff jitter (SplitMix64):
/// jitter needs spread, not secrecy.
pub(crate) struct SplitMix(u64);

impl SplitMix {
    /// Seeded by the projection's name and `seed`, or the time when none
    /// is given.
    pub(crate) fn seeded(name: &str, seed: Option<u64>) -> Self {
        let time = seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::from(d.subsec_nanos()))
        });
        let name = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        SplitMix(name ^ time)
    }

    /// A number in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        // The top 53 bits make an exact f64 in [0, 1).
        #[allow(clippy::cast_precision_loss)]
        let unit = (z >> 11) as f64 / (1_u64 << 53) as f64;
        unit
    }
}
