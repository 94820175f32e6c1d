//! One group commit: every write of a batch in one transaction.
//!
//! Each append is checked and inserted in its own savepoint, with the
//! checkpoint it tracks, so that one refused append (a conflict, a reused
//! id, a reaction already tracked) rolls back alone and never fails its
//! neighbours; a batch of one append needs no savepoint, the transaction is
//! its unit. Two appends of one group that track the same name are checked
//! in order: the second reads the checkpoint the first set. A checkpoint's write (the checkpoint and the
//! events its follower skipped) is several statements, so it always gets a
//! savepoint: nothing of it is kept unless all of it is.
//!
//! Positions are rowids SQLite assigns inside the write transaction, one
//! past the largest stored: with one writer per file (SQLite's write lock)
//! commit order is position order, and a reader never finds an event
//! committed below a position it has already seen.

use annals_core::store::{run_append, Appended, Snapshot};
use annals_core::{
    AppendError, AppendOutcome, AppendRequest, BackendError, BackendErrorKind, Position,
    SnapshotError, Timestamp,
};
use rusqlite::Connection;

use crate::error::backend;
use crate::row::to_sql_int;
use crate::writer::append::{execute, SqliteTarget};
use crate::writer::checkpoint::{reset_checkpoint, save_checkpoint, CheckpointSave};
use crate::writer::fault::{Faults, Step};
use crate::writer::requests::{RequestAnswer, RequestWork};

const SAVE_SNAPSHOT: &str = include_str!("save_snapshot.sql");
const MARK_SYNCED: &str = include_str!("mark_synced.sql");

/// A write the writer commits.
pub(crate) enum Work {
    /// An append.
    Append(AppendRequest),
    /// A snapshot to keep.
    SaveSnapshot(Snapshot),
    /// A follower's checkpoint, with the events it skipped.
    SaveCheckpoint(CheckpointSave),
    /// A follower's name, whose checkpoint and skipped events to forget.
    ResetCheckpoint(String),
    /// A write to durable handlers' requests.
    Requests(RequestWork),
    /// A commit that syncs the WAL (relaxed durability's bound).
    Sync,
}

impl Work {
    pub(crate) fn payload_bytes(&self) -> usize {
        match self {
            Work::Append(request) => request.payload_bytes(),
            Work::SaveSnapshot(snapshot) => snapshot.state.len(),
            Work::SaveCheckpoint(save) => save.bytes(),
            Work::Requests(work) => work.bytes(),
            Work::ResetCheckpoint(_) | Work::Sync => 0,
        }
    }

    /// The answer when the whole batch failed.
    pub(crate) fn failed(&self, error: BackendError) -> Answer {
        match self {
            Work::Append(_) => Answer::Append(Err(AppendError::Backend(error))),
            Work::SaveSnapshot(_) => Answer::Snapshot(Err(SnapshotError::Backend(error))),
            Work::SaveCheckpoint(_) | Work::ResetCheckpoint(_) => Answer::Checkpoint(Err(error)),
            Work::Requests(_) => Answer::Requests(Err(error)),
            Work::Sync => Answer::Sync(Err(error)),
        }
    }
}

/// The answer to one write.
pub(crate) enum Answer {
    Append(Result<AppendOutcome, AppendError>),
    Snapshot(Result<(), SnapshotError>),
    Checkpoint(Result<(), BackendError>),
    Requests(Result<RequestAnswer, BackendError>),
    Sync(Result<(), BackendError>),
}

impl Answer {
    fn is_err(&self) -> bool {
        match self {
            Answer::Append(result) => result.is_err(),
            Answer::Snapshot(result) => result.is_err(),
            Answer::Checkpoint(result) | Answer::Sync(result) => result.is_err(),
            Answer::Requests(result) => result.is_err(),
        }
    }

    /// After a failed commit nothing that looked written may be trusted.
    pub(crate) fn into_unknown(self, error: &BackendError) -> Answer {
        let unknown = || {
            BackendError {
                kind: BackendErrorKind::OutcomeUnknown,
                ..error.clone()
            }
            .with_message("the commit failed; retrying with the same event ids is safe")
        };
        match self {
            Answer::Append(Ok(_)) => Answer::Append(Err(AppendError::Backend(unknown()))),
            Answer::Snapshot(Ok(())) => Answer::Snapshot(Err(SnapshotError::Backend(unknown()))),
            Answer::Checkpoint(Ok(())) => Answer::Checkpoint(Err(unknown())),
            Answer::Sync(Ok(())) => Answer::Sync(Err(unknown())),
            Answer::Requests(Ok(_)) => Answer::Requests(Err(unknown())),
            refused => refused,
        }
    }
}

/// What one transaction over a batch came to.
pub(crate) enum Outcome {
    /// Committed (or nothing needed committing); every write has its answer.
    Done {
        answers: Vec<Answer>,
        /// The new head, if the batch appended.
        head: Option<Position>,
        /// Whether the transaction wrote anything.
        wrote: bool,
    },
    /// SQLite rolled the whole transaction back mid-batch: the writes must
    /// be run again, one per transaction, to get answers of their own.
    Lost,
    /// The transaction could not start; nothing was written.
    NotStarted(BackendError),
    /// The commit failed; what the transaction did is unknown.
    CommitFailed {
        answers: Vec<Answer>,
        error: BackendError,
    },
}

/// The batch's transaction: rolled back on drop unless committed.
struct WriteTransaction<'c> {
    conn: &'c Connection,
}

impl<'c> WriteTransaction<'c> {
    fn begin(conn: &'c Connection, faults: &Faults) -> Result<Self, BackendError> {
        faults
            .check(Step::Begin)
            .and_then(|()| execute(conn, "BEGIN IMMEDIATE"))
            .map_err(|e| backend("starting a write transaction", e))?;
        Ok(WriteTransaction { conn })
    }

    fn commit(self, faults: &Faults) -> Result<(), BackendError> {
        faults
            .check(Step::Commit)
            .and_then(|()| execute(self.conn, "COMMIT"))
            .map_err(|e| backend("committing", e))
    }
}

impl Drop for WriteTransaction<'_> {
    fn drop(&mut self) {
        // After a commit, or after SQLite gave the transaction up, there is
        // nothing to roll back.
        if !self.conn.is_autocommit() {
            if let Err(e) = execute(self.conn, "ROLLBACK") {
                tracing::warn!(error = %e, "rolling back a write transaction failed");
            }
        }
    }
}

/// Runs every write of a batch in one transaction and answers each.
pub(crate) fn run_batch(
    conn: &Connection,
    batch: &[&Work],
    faults: &Faults,
    recorded_at: Timestamp,
) -> Outcome {
    let tx = match WriteTransaction::begin(conn, faults) {
        Ok(tx) => tx,
        Err(error) => return Outcome::NotStarted(error),
    };
    let alone = batch.len() == 1;
    let mut head: Option<Position> = None;
    let mut abandoned = false;
    let mut answers = Vec::with_capacity(batch.len());
    for work in batch {
        let answer = match work {
            Work::Append(request) => {
                let appended = if alone {
                    append_alone(conn, request, recorded_at, faults)
                } else {
                    append_in_savepoint(conn, request, recorded_at, faults, &mut abandoned)
                };
                // A retry of a committed append (its original result) is
                // below the head: `max` leaves the head alone.
                if let Ok(last) = appended.as_ref().map(AppendOutcome::last_position) {
                    head = head.max(last);
                }
                Answer::Append(appended)
            }
            Work::SaveSnapshot(snapshot) => Answer::Snapshot(save_snapshot(conn, snapshot, faults)),
            Work::SaveCheckpoint(save) => Answer::Checkpoint(in_savepoint(
                conn,
                &CHECKPOINT_SAVEPOINT,
                faults,
                &mut abandoned,
                || undo_on_error(save_checkpoint(conn, save, faults, recorded_at)),
            )),
            Work::ResetCheckpoint(name) => Answer::Checkpoint(in_savepoint(
                conn,
                &CHECKPOINT_SAVEPOINT,
                faults,
                &mut abandoned,
                || undo_on_error(reset_checkpoint(conn, name)),
            )),
            Work::Requests(work) => Answer::Requests(in_savepoint(
                conn,
                &REQUESTS_SAVEPOINT,
                faults,
                &mut abandoned,
                || {
                    undo_on_error(work.run(conn, |save| {
                        save_checkpoint(conn, save, faults, recorded_at)
                    }))
                },
            )),
            Work::Sync => Answer::Sync(mark_synced(conn, recorded_at)),
        };
        if answer.is_err() && alone {
            // Nothing of a lone write that failed may commit: dropping the
            // transaction rolls back whatever it began.
            drop(tx);
            return Outcome::Done {
                answers: vec![answer],
                head: None,
                wrote: false,
            };
        }
        if answer.is_err() && (conn.is_autocommit() || abandoned) {
            // The whole transaction is gone (SQLite gave it up after an
            // I/O error, or it was given up above): the work of earlier
            // writes in the batch is gone too.
            return Outcome::Lost;
        }
        answers.push(answer);
    }
    let wrote = answers.iter().any(|a| !a.is_err());
    if conn.is_autocommit() {
        // A lone append that was refused or found already committed undid
        // its transaction: there is nothing to commit.
        return Outcome::Done {
            answers,
            head: None,
            wrote: false,
        };
    }
    match tx.commit(faults) {
        Ok(()) => Outcome::Done {
            answers,
            head,
            wrote,
        },
        Err(error) => Outcome::CommitFailed { answers, error },
    }
}

/// One append with the transaction to itself: no savepoint is needed, the
/// transaction is the unit that commits or rolls back. This is the path of
/// appends made one at a time.
fn append_alone(
    conn: &Connection,
    request: &AppendRequest,
    recorded_at: Timestamp,
    faults: &Faults,
) -> Result<AppendOutcome, AppendError> {
    let mut target = SqliteTarget {
        conn,
        faults,
        // Undoing the inserts before looking at what is stored, or the
        // lookup would find them.
        undo: "ROLLBACK",
    };
    match run_append(&mut target, request, recorded_at)? {
        Appended::Inserted(outcome) => Ok(outcome),
        refused => {
            if !conn.is_autocommit() {
                execute(conn, "ROLLBACK")
                    .map_err(|e| backend("rolling back a refused append", e))?;
            }
            refused.into_result()
        }
    }
}

/// One append in its own savepoint: written completely, or not at all.
fn append_in_savepoint(
    conn: &Connection,
    request: &AppendRequest,
    recorded_at: Timestamp,
    faults: &Faults,
    abandoned: &mut bool,
) -> Result<AppendOutcome, AppendError> {
    in_savepoint(conn, &APPEND_SAVEPOINT, faults, abandoned, || {
        let mut target = SqliteTarget {
            conn,
            faults,
            undo: APPEND_SAVEPOINT.undo,
        };
        match run_append(&mut target, request, recorded_at) {
            Ok(Appended::Inserted(outcome)) => (false, Ok(outcome)),
            Ok(refused) => (true, refused.into_result()),
            Err(error) => (true, Err(AppendError::Backend(error))),
        }
    })
}

/// The statements of a named savepoint, each spelled out whole so that it
/// is a cached statement, and what its write is called in errors.
struct Savepoint {
    begin: &'static str,
    undo: &'static str,
    release: &'static str,
    doing: &'static str,
    ending: &'static str,
}

const APPEND_SAVEPOINT: Savepoint = Savepoint {
    begin: "SAVEPOINT append",
    undo: "ROLLBACK TO append",
    release: "RELEASE append",
    doing: "appending",
    ending: "ending an append's savepoint",
};

const CHECKPOINT_SAVEPOINT: Savepoint = Savepoint {
    begin: "SAVEPOINT checkpoint",
    undo: "ROLLBACK TO checkpoint",
    release: "RELEASE checkpoint",
    doing: "writing a checkpoint",
    ending: "ending a checkpoint's savepoint",
};

const REQUESTS_SAVEPOINT: Savepoint = Savepoint {
    begin: "SAVEPOINT requests",
    undo: "ROLLBACK TO requests",
    release: "RELEASE requests",
    doing: "writing handler requests",
    ending: "ending a handler request write's savepoint",
};

/// Runs `write` in a savepoint of the group's transaction, so that it is
/// written completely or not at all. `write` says whether what it did must
/// be undone (it was refused, or failed halfway), and its result.
fn in_savepoint<T, E: From<BackendError>>(
    conn: &Connection,
    savepoint: &Savepoint,
    faults: &Faults,
    abandoned: &mut bool,
    write: impl FnOnce() -> (bool, Result<T, E>),
) -> Result<T, E> {
    faults
        .check(Step::Savepoint)
        .and_then(|()| execute(conn, savepoint.begin))
        .map_err(|e| backend(savepoint.doing, e))?;
    let (undo, result) = write();
    if conn.is_autocommit() {
        // SQLite gave up the transaction; the batch will notice.
        return result;
    }
    let ended = if undo {
        execute(conn, savepoint.undo).and_then(|()| execute(conn, savepoint.release))
    } else {
        execute(conn, savepoint.release)
    };
    if let Err(e) = ended {
        // A write whose savepoint cannot be ended may have rows in the
        // group's transaction: give the whole transaction up, so that
        // nothing of it commits; the batch then runs each write alone.
        *abandoned = true;
        if let Err(rollback) = execute(conn, "ROLLBACK") {
            tracing::warn!(error = %rollback, "rolling back a write transaction failed");
        }
        return Err(backend(savepoint.ending, e).into());
    }
    result
}

/// A write that failed is undone, whatever it did before failing.
fn undo_on_error<T>(result: Result<T, BackendError>) -> (bool, Result<T, BackendError>) {
    (result.is_err(), result)
}

fn save_snapshot(
    conn: &Connection,
    snapshot: &Snapshot,
    faults: &Faults,
) -> Result<(), SnapshotError> {
    let failed = |e| SnapshotError::Backend(backend("saving a snapshot", e));
    faults.check(Step::Insert).map_err(failed)?;
    conn.prepare_cached(SAVE_SNAPSHOT)
        .and_then(|mut s| {
            s.execute(rusqlite::params![
                snapshot.stream_id.as_str(),
                to_sql_int(snapshot.version),
                snapshot.state_version,
                snapshot.state.as_str(),
                snapshot.taken_at.as_unix_micros(),
            ])
        })
        .map_err(failed)?;
    Ok(())
}

fn mark_synced(conn: &Connection, at: Timestamp) -> Result<(), BackendError> {
    conn.prepare_cached(MARK_SYNCED)
        .and_then(|mut s| s.execute([at.as_unix_micros().to_string()]))
        .map_err(|e| backend("syncing", e))?;
    Ok(())
}
