//! The writer: the only user of the write connection, and group commit.
//!
//! This module owns the whole protocol: the handle callers append through,
//! the queue, who commits, and the thread that takes over under load.
//!
//! # Who commits
//!
//! With `synchronous = FULL` every commit waits for the disk to sync, and
//! that wait, not the inserts, limits one append at a time; so appends are
//! grouped: whatever is queued commits in one transaction, one sync for
//! many appends, each append still checked and answered on its own.
//!
//! Handing every append to a writer thread and back costs two thread
//! wake-ups, which for a small append on a quiet store cost more than the
//! append itself. So an append that finds no commit in progress commits
//! itself, on its caller's thread (inside `block_in_place`), and answers
//! itself: no hand-off. Appends that arrive while a commit is in progress
//! queue up; when it ends they are handed, all at once, to the writer
//! thread, which commits them in one group and keeps committing whatever
//! queues meanwhile, until the queue is empty. Under load that is the group
//! commit it always was.
//!
//! It is safe because one leader at a time holds the write connection:
//! `Leader` says who, and changes only under the state lock, where the
//! connection is taken and put back. A caller that leads cannot be
//! cancelled halfway: its commit and its hand-over run in one blocking call
//! that finishes even if the caller stops waiting. The queue is bounded:
//! callers wait for room rather than grow memory.
//!
//! # Relaxed durability, bounded
//!
//! With `Durability::Relaxed` commits do not sync the WAL
//! (`synchronous = NORMAL`), so a power loss can take back the latest
//! ones. To bound that, the writer thread makes the WAL durable at most
//! `sync_interval` after the first commit that was not synced: it commits
//! a marker row with `synchronous = FULL`, which syncs the WAL file and
//! with it every commit before it. An append acknowledged at time t is on
//! disk by t + `sync_interval` + the time one sync takes.

mod append;
mod checkpoint;
mod fault;
mod queue;
mod requests;
#[cfg(test)]
mod tests;
mod transaction;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use annals_core::store::Snapshot;
use annals_core::{
    AppendError, AppendOutcome, AppendRequest, BackendError, BackendErrorKind, SnapshotError,
    Timestamp,
};
use rusqlite::Connection;
use tokio::sync::{oneshot, Semaphore};

use crate::error::backend;
use crate::options::{Durability, SqliteOptions};
use crate::schema;
use crate::watch::Head;

pub(crate) use checkpoint::CheckpointSave;
#[cfg(feature = "fault-injection")]
pub use fault::FaultPlan;
use fault::Faults;
use queue::{answer_all, sync_job, Job, Leader, State};
pub(crate) use requests::{RequestAnswer, RequestWork};
use transaction::{run_batch, Answer, Outcome, Work};

/// The handle every append, snapshot and checkpoint goes through.
pub(crate) struct Writer {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// What the leaders and the writer thread share.
struct Shared {
    state: Mutex<State>,
    /// Wakes the writer thread: work was handed to it, a sync is due, or
    /// the store is closing.
    wake: Condvar,
    /// Signals that the writer thread stopped.
    stopped: Condvar,
    /// Room in the queue; closed when the store closes.
    room: Arc<Semaphore>,
    options: SqliteOptions,
    path: PathBuf,
    faults: Faults,
    head: Arc<Head>,
    stats: Stats,
}

/// What the writer has done, counted.
#[derive(Default)]
struct Stats {
    caller_commits: AtomicU64,
    thread_commits: AtomicU64,
    syncs: AtomicU64,
}

/// A reading of the writer's counts.
#[cfg(test)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct WriterStats {
    /// Transactions callers committed on their own threads.
    pub(crate) caller_commits: u64,
    /// Transactions the writer thread committed.
    pub(crate) thread_commits: u64,
    /// Commits that synced the WAL for relaxed durability.
    pub(crate) syncs: u64,
}

impl Writer {
    /// Starts the writer on an open write connection.
    pub(crate) fn start(
        conn: Connection,
        options: SqliteOptions,
        path: PathBuf,
        head: Arc<Head>,
    ) -> Result<Writer, BackendError> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                leader: Leader::None,
                conn: Some(conn),
                pending: VecDeque::new(),
                closed: false,
                stopped: false,
                unsynced_since: None,
            }),
            wake: Condvar::new(),
            stopped: Condvar::new(),
            room: Arc::new(Semaphore::new(options.queue_capacity)),
            faults: Faults::from_options(&options),
            options,
            path,
            head,
            stats: Stats::default(),
        });
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("annals-sqlite-writer".into())
                .spawn(move || shared.run_thread_until_closed())
                .map_err(|e| {
                    BackendError::with_source(
                        BackendErrorKind::Other,
                        "starting the writer thread",
                        e,
                    )
                })?
        };
        Ok(Writer {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Appends, atomically; `request` was checked by the caller.
    pub(crate) async fn append(
        &self,
        request: AppendRequest,
    ) -> Result<AppendOutcome, AppendError> {
        match self.submit(Work::Append(request)).await? {
            Answer::Append(result) => result,
            _ => Err(mixed_up().into()),
        }
    }

    /// Saves a snapshot.
    pub(crate) async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), SnapshotError> {
        match self.submit(Work::SaveSnapshot(snapshot)).await? {
            Answer::Snapshot(result) => result,
            _ => Err(mixed_up().into()),
        }
    }

    /// Saves a follower's checkpoint with the events it skipped, in one
    /// transaction.
    pub(crate) async fn save_checkpoint(&self, save: CheckpointSave) -> Result<(), BackendError> {
        self.checkpoint(Work::SaveCheckpoint(save)).await
    }

    /// Forgets a follower's checkpoint and skipped events, in one
    /// transaction.
    pub(crate) async fn reset_checkpoint(&self, name: &str) -> Result<(), BackendError> {
        self.checkpoint(Work::ResetCheckpoint(name.to_owned()))
            .await
    }

    /// A write to durable handlers' requests, in one transaction.
    pub(crate) async fn requests(&self, work: RequestWork) -> Result<RequestAnswer, BackendError> {
        match self.submit(Work::Requests(work)).await? {
            Answer::Requests(result) => result,
            _ => Err(mixed_up()),
        }
    }

    async fn checkpoint(&self, work: Work) -> Result<(), BackendError> {
        match self.submit(work).await? {
            Answer::Checkpoint(result) => result,
            _ => Err(mixed_up()),
        }
    }

    /// Queues `work`, or commits it right here when no one else is
    /// committing, and returns its answer.
    async fn submit(&self, work: Work) -> Result<Answer, BackendError> {
        let room = self
            .shared
            .room
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| BackendError::closed())?;
        let (reply, answer) = oneshot::channel();
        let job = Job {
            work,
            reply,
            _room: Some(room),
        };
        let lead = {
            let mut state = self.shared.lock();
            if state.closed {
                return Err(BackendError::closed());
            }
            if state.leader == Leader::None {
                state.leader = Leader::Caller;
                Some(Lead {
                    shared: self.shared.clone(),
                    job: Some(job),
                    conn: state.conn.take(),
                    wrote: Wrote::Nothing,
                })
            } else {
                state.pending.push_back(job);
                None
            }
        };
        if let Some(lead) = lead {
            // Whatever becomes of this call (the blocking pool may drop the
            // work unrun at shutdown), the lead hands over when dropped and
            // the job is answered by whoever commits it: the answer below
            // is the one to wait for.
            let _ = crate::blocking::run(move || lead.commit()).await;
        }
        match answer.await {
            Ok(answer) => Ok(answer),
            Err(_) if self.shared.lock().closed => Err(BackendError::closed()),
            // The write was dropped halfway (a panic in the writer).
            Err(_) => Err(BackendError::new(
                BackendErrorKind::OutcomeUnknown,
                "the writer failed while committing; retrying with the same event ids is safe",
            )),
        }
    }

    /// What the writer has done so far.
    #[cfg(test)]
    pub(crate) fn stats(&self) -> WriterStats {
        let stats = &self.shared.stats;
        WriterStats {
            caller_commits: stats.caller_commits.load(Ordering::Relaxed),
            thread_commits: stats.thread_commits.load(Ordering::Relaxed),
            syncs: stats.syncs.load(Ordering::Relaxed),
        }
    }

    /// Finishes the commit in progress, answers every queued write with
    /// `Closed`, syncs what relaxed durability left unsynced, and stops the
    /// thread; later writes fail with `Closed`. Waits for all of it.
    pub(crate) fn close(&self) {
        {
            let mut state = self.shared.lock();
            state.closed = true;
            self.shared.room.close();
            answer_all(state.pending.drain(..), &BackendError::closed());
            self.shared.wake.notify_all();
        }
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match thread {
            Some(thread) => {
                if thread.join().is_err() {
                    tracing::error!("the SQLite writer thread panicked");
                }
            }
            // Another close is joining the thread: wait for it to stop too.
            None => {
                let mut state = self.shared.lock();
                while !state.stopped {
                    state = self
                        .shared
                        .stopped
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            }
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.close();
    }
}

fn mixed_up() -> BackendError {
    BackendError::new(BackendErrorKind::Other, "the writer mixed up its replies")
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while the lock was held cannot leave a half-changed
        // state: every change under it is a single assignment or push.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn relaxed(&self) -> bool {
        self.options.durability == Durability::Relaxed
    }

    /// Gives the connection back after a caller's commit and hands over:
    /// to the writer thread if work queued meanwhile, else to no one.
    fn hand_over(&self, conn: Option<Connection>, wrote: Wrote, unrun: Option<Job>) {
        let mut state = self.lock();
        state.conn = conn;
        self.note_commit(&mut state, wrote);
        if let Some(job) = unrun {
            if state.closed {
                job.fail(BackendError::closed());
            } else {
                // It never ran: it goes first in line.
                state.pending.push_front(job);
            }
        }
        if !state.pending.is_empty() && !state.closed {
            state.leader = Leader::Thread;
            self.wake.notify_one();
        } else {
            state.leader = Leader::None;
            if state.closed {
                // The thread waits for the connection to stop.
                self.wake.notify_one();
            }
        }
    }

    /// Runs the writer thread until the store closes. A panic in it (a bug)
    /// is logged and the thread carries on, so that queued work is never
    /// left to a thread that is gone.
    fn run_thread_until_closed(&self) {
        loop {
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run_thread())) {
                Ok(()) => break,
                Err(_) => {
                    tracing::error!("the SQLite writer thread panicked; carrying on");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        let mut state = self.lock();
        state.stopped = true;
        self.stopped.notify_all();
    }

    /// The writer thread: commits what callers hand over, and the syncs
    /// relaxed durability is due, until the store closes.
    fn run_thread(&self) {
        let mut state = self.lock();
        loop {
            if state.closed && state.leader == Leader::None {
                break;
            }
            let due = self.sync_due(&state).filter(|_| !state.closed);
            let sync_now = due.is_some_and(|wait| wait.is_zero());
            match state.leader {
                // Idle with a sync due: lead, and the sync comes next.
                Leader::None if sync_now => state.leader = Leader::Thread,
                Leader::None => {
                    state = self.wait(state, due);
                    continue;
                }
                Leader::Caller => {
                    // The caller hands this over when its commit ends.
                    if sync_now {
                        state.queue_sync(false);
                    }
                    state = self.wait(state, due.filter(|_| !sync_now));
                    continue;
                }
                Leader::Thread => {}
            }
            if sync_now {
                // First in line, so that it joins this very group.
                state.queue_sync(true);
            }
            let batch =
                state.take_batch(self.options.max_batch_appends, self.options.max_batch_bytes);
            if batch.is_empty() {
                state.leader = Leader::None;
                continue;
            }
            let conn = state.conn.take();
            drop(state);
            self.stats.thread_commits.fetch_add(1, Ordering::Relaxed);
            let (conn, wrote) = self.commit(conn, batch);
            state = self.lock();
            state.conn = conn;
            self.note_commit(&mut state, wrote);
        }
        // Closing: make relaxed commits durable before the connection goes,
        // in one last attempt.
        if state.unsynced_since.is_some() {
            let conn = state.conn.take();
            drop(state);
            let (conn, wrote) = self.commit(conn, vec![sync_job()]);
            if wrote != Wrote::Synced {
                tracing::warn!("the last commits before closing could not be synced");
            }
            state = self.lock();
            state.conn = conn;
        }
        state.conn = None;
    }

    fn wait<'s>(
        &self,
        state: MutexGuard<'s, State>,
        timeout: Option<Duration>,
    ) -> MutexGuard<'s, State> {
        match timeout {
            Some(timeout) => {
                self.wake
                    .wait_timeout(state, timeout)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
            None => self
                .wake
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner),
        }
    }

    /// How long until a sync is due: `None` when none is (full durability,
    /// or nothing unsynced).
    fn sync_due(&self, state: &State) -> Option<Duration> {
        let since = state.unsynced_since?;
        // An interval past what an `Instant` can hold means: never.
        let due = since.checked_add(self.options.sync_interval)?;
        Some(due.saturating_duration_since(Instant::now()))
    }

    /// Records a commit's effect on what relaxed durability left unsynced.
    fn note_commit(&self, state: &mut State, wrote: Wrote) {
        if !self.relaxed() {
            return;
        }
        match wrote {
            Wrote::Synced => {
                state.unsynced_since = None;
                self.stats.syncs.fetch_add(1, Ordering::Relaxed);
            }
            Wrote::SyncFailed => {
                // Try again an interval from now, not at once: a disk that
                // refuses now (full, gone) is not helped by a tight loop.
                tracing::warn!("syncing relaxed commits failed; trying again after the interval");
                state.unsynced_since = Some(Instant::now());
            }
            Wrote::Unsynced if state.unsynced_since.is_none() => {
                state.unsynced_since = Some(Instant::now());
                // The thread sets its timer by it.
                self.wake.notify_one();
            }
            _ => {}
        }
    }

    /// Commits a batch on the connection (reopened if a failed commit
    /// closed it), publishes the new head, answers every job, and returns
    /// the connection (`None` if it must be reopened) and what was written.
    fn commit(&self, conn: Option<Connection>, batch: Vec<Job>) -> (Option<Connection>, Wrote) {
        let sync = self.relaxed() && batch.iter().any(|j| matches!(j.work, Work::Sync));
        // What a commit that failed wrote is unknown: count it as unsynced,
        // or, when it was to sync, as a failed sync.
        let failed = if sync {
            Wrote::SyncFailed
        } else {
            Wrote::Unsynced
        };
        let conn = match conn.map_or_else(|| self.reopen(), Ok) {
            Ok(conn) => conn,
            Err(error) => {
                answer_all(batch, &error);
                let wrote = if sync { failed } else { Wrote::Nothing };
                return (None, wrote);
            }
        };
        // A write that panics must not leave the connection in limbo: the
        // connection is dropped and reopened, and the callers whose answer
        // was lost learn that the outcome is unknown.
        let committed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.commit_on(&conn, batch, sync)
        }));
        match committed {
            // A connection still inside a transaction (a rollback that
            // failed) would refuse every later BEGIN: reopen instead.
            Ok(Ok(wrote)) if conn.is_autocommit() => (Some(conn), wrote),
            Ok(Ok(_)) => {
                tracing::warn!("the write connection is stuck in a transaction; reopening");
                (None, failed)
            }
            Ok(Err(())) => (None, failed),
            Err(_) => {
                tracing::error!("a write panicked; reopening the write connection");
                (None, failed)
            }
        }
    }

    /// Commits and answers; `Err(())` when the connection must be dropped.
    fn commit_on(&self, conn: &Connection, batch: Vec<Job>, sync: bool) -> Result<Wrote, ()> {
        if sync {
            if let Err(e) = conn.pragma_update(None, "synchronous", "FULL") {
                answer_all(batch, &backend("syncing", e));
                return Ok(Wrote::SyncFailed);
            }
        }
        let works: Vec<&Work> = batch.iter().map(|j| &j.work).collect();
        let outcome = run_batch(conn, &works, &self.faults, Timestamp::now());
        let (mut keep, wrote) = match outcome {
            Outcome::Lost => {
                tracing::debug!(
                    size = batch.len(),
                    "transaction lost; committing one by one"
                );
                // A batch of one never comes back `Lost`, so this ends.
                let mut keep = true;
                let mut wrote = false;
                for job in batch {
                    if !keep {
                        // The connection failed: this one was not tried.
                        job.fail(BackendError::new(
                            BackendErrorKind::Io,
                            "the write connection failed before this write was tried; \
                             nothing of it was written",
                        ));
                        continue;
                    }
                    let outcome = run_batch(conn, &[&job.work], &self.faults, Timestamp::now());
                    wrote |= matches!(outcome, Outcome::Done { wrote: true, .. });
                    keep &= self.finish(vec![job], outcome);
                }
                (keep, wrote)
            }
            outcome => {
                let wrote = matches!(outcome, Outcome::Done { wrote: true, .. });
                (self.finish(batch, outcome), wrote)
            }
        };
        if sync {
            if let Err(e) = conn.pragma_update(None, "synchronous", "NORMAL") {
                tracing::warn!(error = %e, "could not return to relaxed durability; reopening");
                keep = false;
            }
        }
        if !keep {
            // What the caller counts as written then is its own call.
            return Err(());
        }
        let full = !self.relaxed() || sync;
        Ok(match wrote {
            true if full => Wrote::Synced,
            _ if sync => Wrote::SyncFailed,
            true => Wrote::Unsynced,
            false => Wrote::Nothing,
        })
    }

    /// Answers a batch by its outcome; `false` when the connection must be
    /// dropped (a failed commit). `outcome` is never `Lost`.
    fn finish(&self, batch: Vec<Job>, outcome: Outcome) -> bool {
        match outcome {
            Outcome::Done { answers, head, .. } => {
                // Published before answering: a caller that waits for its
                // own append on the head watch finds it already there.
                if let Some(head) = head {
                    self.head.publish(head);
                }
                for (job, answer) in batch.into_iter().zip(answers) {
                    let _ = job.reply.send(answer);
                }
                true
            }
            Outcome::NotStarted(error) => {
                answer_all(batch, &error);
                true
            }
            Outcome::Lost => {
                answer_all(batch, &mixed_up());
                true
            }
            Outcome::CommitFailed { answers, error } => {
                tracing::warn!(error = %error, "commit failed; closing the write connection");
                // After a failed commit the connection's view of the file
                // cannot be trusted (fsyncgate): reopen before the next batch.
                for (job, answer) in batch.into_iter().zip(answers) {
                    let _ = job.reply.send(answer.into_unknown(&error));
                }
                false
            }
        }
    }

    fn reopen(&self) -> Result<Connection, BackendError> {
        schema::reopen_writer(&self.options, &self.path)
            .map_err(|e| backend("reopening the write connection", e))
    }
}

/// What a commit left to make durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wrote {
    /// Nothing was written.
    Nothing,
    /// Written and synced: every commit so far is durable.
    Synced,
    /// Written without a sync (relaxed durability).
    Unsynced,
    /// A sync was asked for and failed.
    SyncFailed,
}

/// A caller's turn to commit: its job and the write connection. However
/// it ends — committed, or dropped unrun when the runtime's blocking pool
/// shuts down, or unwound by a panic — dropping it gives the connection
/// back and hands over, and a job that never ran goes back in line.
struct Lead {
    shared: Arc<Shared>,
    job: Option<Job>,
    conn: Option<Connection>,
    wrote: Wrote,
}

impl Lead {
    /// Commits the caller's own job; the hand-over follows on drop.
    fn commit(mut self) {
        self.shared
            .stats
            .caller_commits
            .fetch_add(1, Ordering::Relaxed);
        if let Some(job) = self.job.take() {
            let (conn, wrote) = self.shared.commit(self.conn.take(), vec![job]);
            self.conn = conn;
            self.wrote = wrote;
        }
    }
}

impl Drop for Lead {
    fn drop(&mut self) {
        self.shared
            .hand_over(self.conn.take(), self.wrote, self.job.take());
    }
}
