//! The writer's queue: who holds the write connection, what waits for it,
//! and how the next group commit is taken from it.

use std::collections::VecDeque;
use std::time::Instant;

use annals_core::BackendError;
use rusqlite::Connection;
use tokio::sync::{oneshot, OwnedSemaphorePermit};

use crate::writer::transaction::{Answer, Work};

/// Who holds the write connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leader {
    /// No one: the connection is in `State::conn`, the queue is empty.
    None,
    /// A caller commits its own append on its own thread.
    Caller,
    /// The writer thread commits what is queued.
    Thread,
}

/// The writer's shared state, under one lock.
pub(crate) struct State {
    pub(crate) leader: Leader,
    /// The write connection while no one leads; `None` as well after a
    /// failed commit closed it (it is reopened on next use).
    pub(crate) conn: Option<Connection>,
    pub(crate) pending: VecDeque<Job>,
    pub(crate) closed: bool,
    /// The writer thread has stopped: the store is closed and done.
    pub(crate) stopped: bool,
    /// When the first commit not yet synced ended (relaxed durability), or
    /// when a sync last failed: a sync is due an interval after it.
    pub(crate) unsynced_since: Option<Instant>,
}

/// A write and the caller waiting for its answer.
pub(crate) struct Job {
    pub(crate) work: Work,
    pub(crate) reply: oneshot::Sender<Answer>,
    /// The job's place in the bounded queue, freed when it is answered.
    pub(crate) _room: Option<OwnedSemaphorePermit>,
}

impl Job {
    /// Answers the job with a failure that applies to the whole write.
    pub(crate) fn fail(self, error: BackendError) {
        let answer = self.work.failed(error);
        let _ = self.reply.send(answer);
    }
}

impl State {
    /// Queues the sync relaxed durability owes, unless one is queued:
    /// first in line when it should join the next group.
    pub(crate) fn queue_sync(&mut self, first: bool) {
        if self.pending.iter().any(|j| matches!(j.work, Work::Sync)) {
            return;
        }
        if first {
            self.pending.push_front(sync_job());
        } else {
            self.pending.push_back(sync_job());
        }
    }

    /// The next group from the queue: the first job, and those after it up
    /// to the bounds (appends and payload bytes). A job too large to join
    /// stays first in line for the next group.
    pub(crate) fn take_batch(&mut self, max_appends: usize, max_bytes: usize) -> Vec<Job> {
        let mut batch: Vec<Job> = Vec::new();
        let mut bytes = 0usize;
        while batch.len() < max_appends {
            let Some(next) = self.pending.front() else {
                break;
            };
            let size = next.work.payload_bytes();
            if !batch.is_empty() && bytes.saturating_add(size) > max_bytes {
                break;
            }
            bytes = bytes.saturating_add(size);
            batch.extend(self.pending.pop_front());
        }
        batch
    }
}

/// A job for the sync relaxed durability owes; no one waits for its answer.
pub(crate) fn sync_job() -> Job {
    let (reply, _) = oneshot::channel();
    Job {
        work: Work::Sync,
        reply,
        _room: None,
    }
}

/// Answers every job with the same failure.
pub(crate) fn answer_all(jobs: impl IntoIterator<Item = Job>, error: &BackendError) {
    for job in jobs {
        job.fail(error.clone());
    }
}
