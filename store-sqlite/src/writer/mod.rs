//! The writer thread: the only owner of the write connection, and group
//! commit.
//!
//! Why appends are grouped: with `synchronous = FULL` every commit waits for
//! the disk to sync, and that wait, not the inserts, is what limits one
//! append at a time. The writer takes whatever appends are queued (up to a
//! bound), checks and inserts each one in its own savepoint, and commits
//! them all in one transaction: one sync for many appends. Each append is
//! still checked on its own — expected version, event ids — and answered on
//! its own, so one conflict never fails its neighbours.
//!
//! Positions are assigned here, inside the write transaction, from the
//! largest stored position; with a single writer per file (SQLite's write
//! lock) commit order is position order, and a reader never finds an event
//! committed below a position it has already seen.

mod fault;

use std::path::PathBuf;

use annals_core::{
    AppendError, AppendOutcome, AppendRequest, BackendError, BackendErrorKind, Position, Replay,
    Snapshot, SnapshotError, Timestamp,
};
use rusqlite::{Connection, Transaction, TransactionBehavior};
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::{backend, is_unique_violation};
use crate::options::SqliteOptions;
use crate::read::{self, to_sql_int};
use crate::schema;

#[cfg(feature = "fault-injection")]
pub use fault::FaultPlan;
pub(crate) use fault::Step;

const INSERT_EVENT: &str = include_str!("insert_event.sql");
const STREAM_VERSION: &str = include_str!("stream_version.sql");
const SAVE_SNAPSHOT: &str = include_str!("save_snapshot.sql");

/// What the writer is asked to do.
pub(crate) enum Command {
    /// Something to commit; it carries its own reply.
    Work(Work),
    /// Finish what is being committed, refuse what is queued, and stop.
    Close(oneshot::Sender<()>),
}

/// A write, with the reply its caller waits on.
pub(crate) enum Work {
    Append {
        request: AppendRequest,
        reply: oneshot::Sender<Result<AppendOutcome, AppendError>>,
    },
    SaveSnapshot {
        snapshot: Snapshot,
        reply: oneshot::Sender<Result<(), SnapshotError>>,
    },
}

impl Work {
    fn payload_bytes(&self) -> usize {
        match self {
            Work::Append { request, .. } => request.payload_bytes(),
            Work::SaveSnapshot { snapshot, .. } => snapshot.state.len(),
        }
    }

    /// Answers with an error that applies to the whole write.
    fn fail(self, error: BackendError) {
        match self {
            Work::Append { reply, .. } => {
                let _ = reply.send(Err(AppendError::Backend(error)));
            }
            Work::SaveSnapshot { reply, .. } => {
                let _ = reply.send(Err(SnapshotError::Backend(error)));
            }
        }
    }

    fn answer(self, answer: Answer) {
        match (self, answer) {
            (Work::Append { reply, .. }, Answer::Append(result)) => {
                let _ = reply.send(result);
            }
            (Work::SaveSnapshot { reply, .. }, Answer::Snapshot(result)) => {
                let _ = reply.send(result);
            }
            (work, _) => work.fail(BackendError::new(
                BackendErrorKind::Other,
                "the writer mixed up its replies",
            )),
        }
    }
}

/// The result of one command within a transaction.
enum Answer {
    Append(Result<AppendOutcome, AppendError>),
    Snapshot(Result<(), SnapshotError>),
}

impl Answer {
    fn is_err(&self) -> bool {
        match self {
            Answer::Append(result) => result.is_err(),
            Answer::Snapshot(result) => result.is_err(),
        }
    }

    /// After a failed commit nothing that looked written may be trusted.
    fn into_unknown(self, error: &rusqlite::Error) -> Answer {
        let unknown = || {
            BackendError::new(
                BackendErrorKind::OutcomeUnknown,
                format!("the commit failed ({error}); retrying with the same event ids is safe"),
            )
        };
        match self {
            Answer::Append(Ok(_)) => Answer::Append(Err(AppendError::Backend(unknown()))),
            Answer::Snapshot(Ok(())) => Answer::Snapshot(Err(SnapshotError::Backend(unknown()))),
            refused => refused,
        }
    }
}

/// Why one command inside a transaction stopped.
enum Stop {
    /// Refused before anything was written (a conflict, an overflowing
    /// version), but the event ids must be looked up: this may be a retry
    /// of an append already committed.
    Refused(AppendError),
    /// An insert hit the unique index on event ids.
    DuplicateId,
    /// SQLite failed.
    Sqlite(rusqlite::Error),
}

impl From<rusqlite::Error> for Stop {
    fn from(e: rusqlite::Error) -> Self {
        Stop::Sqlite(e)
    }
}

/// What one transaction over a batch came to.
enum Outcome {
    /// Committed (or nothing needed committing); every command has its answer.
    Done {
        answers: Vec<Answer>,
        head: Option<u64>,
    },
    /// SQLite rolled the whole transaction back mid-batch: the commands must
    /// be run again, one per transaction, to get answers of their own.
    Lost,
    /// The transaction could not start; nothing was written.
    NotStarted(BackendError),
    /// The commit failed; what the transaction did is unknown.
    CommitFailed {
        answers: Vec<Answer>,
        error: rusqlite::Error,
    },
}

/// The writer: owns the write connection and runs on its own thread.
pub(crate) struct Writer {
    conn: Option<Connection>,
    options: SqliteOptions,
    path: PathBuf,
    commands: mpsc::Receiver<Command>,
    head: watch::Sender<Position>,
    /// A write taken from the queue that did not fit the last batch.
    carried: Option<Work>,
    faults: fault::Faults,
}

impl Writer {
    pub(crate) fn new(
        conn: Connection,
        options: SqliteOptions,
        path: PathBuf,
        commands: mpsc::Receiver<Command>,
        head: watch::Sender<Position>,
    ) -> Self {
        let faults = fault::Faults::from_options(&options);
        Writer {
            conn: Some(conn),
            options,
            path,
            commands,
            head,
            carried: None,
            faults,
        }
    }

    /// Serves commands until the store is closed or dropped.
    pub(crate) fn run(mut self) {
        loop {
            let first = match self.carried.take() {
                Some(work) => Command::Work(work),
                None => match self.commands.blocking_recv() {
                    Some(command) => command,
                    None => return,
                },
            };
            let mut batch = Vec::new();
            let close = match first {
                Command::Close(done) => Some(done),
                Command::Work(work) => {
                    batch.push(work);
                    self.fill(&mut batch)
                }
            };
            if !batch.is_empty() {
                self.commit(batch);
            }
            if let Some(done) = close {
                self.shut_down(done);
                return;
            }
        }
    }

    /// Takes queued commands into the batch, up to the bounds. Returns the
    /// close request if one was met.
    fn fill(&mut self, batch: &mut Vec<Work>) -> Option<oneshot::Sender<()>> {
        let mut bytes: usize = batch.iter().map(Work::payload_bytes).sum();
        while batch.len() < self.options.max_batch_appends {
            let next = match self.commands.try_recv() {
                Ok(Command::Work(work)) => work,
                Ok(Command::Close(done)) => return Some(done),
                Err(_) => return None,
            };
            let size = next.payload_bytes();
            if bytes.saturating_add(size) > self.options.max_batch_bytes {
                self.carried = Some(next);
                return None;
            }
            bytes += size;
            batch.push(next);
        }
        None
    }

    fn shut_down(&mut self, done: oneshot::Sender<()>) {
        self.commands.close();
        if let Some(work) = self.carried.take() {
            work.fail(BackendError::closed());
        }
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::Work(work) => work.fail(BackendError::closed()),
                Command::Close(done) => {
                    let _ = done.send(());
                }
            }
        }
        self.conn = None;
        let _ = done.send(());
    }

    /// Commits a batch and answers every write in it.
    fn commit(&mut self, batch: Vec<Work>) {
        match self.transact(&batch) {
            Outcome::Lost => {
                tracing::debug!(
                    size = batch.len(),
                    "transaction lost; committing one by one"
                );
                // A batch of one never comes back `Lost`, so this ends.
                for work in batch {
                    self.commit(vec![work]);
                }
            }
            Outcome::Done { answers, head } => self.finish(batch, answers, head),
            Outcome::NotStarted(error) => {
                for work in batch {
                    work.fail(clone_error(&error));
                }
            }
            Outcome::CommitFailed { answers, error } => {
                tracing::warn!(error = %error, "commit failed; closing the write connection");
                // After a failed commit the connection's view of the file
                // cannot be trusted (fsyncgate): reopen before the next batch.
                self.conn = None;
                let answers = answers
                    .into_iter()
                    .map(|a| a.into_unknown(&error))
                    .collect();
                self.finish(batch, answers, None);
            }
        }
    }

    /// Runs one transaction over the batch on the write connection.
    fn transact(&mut self, batch: &[Work]) -> Outcome {
        let faults = self.faults.clone();
        match self.connection() {
            Ok(conn) => run_transaction(conn, batch, Timestamp::now(), &faults),
            Err(error) => Outcome::NotStarted(error),
        }
    }

    /// Publishes the new head, then answers: a caller that waits for its
    /// own append on the head watch finds it already there.
    fn finish(&mut self, batch: Vec<Work>, answers: Vec<Answer>, head: Option<u64>) {
        if let Some(head) = head {
            self.head.send_if_modified(|current| {
                let moved = current.0 < head;
                if moved {
                    *current = Position(head);
                }
                moved
            });
        }
        for (work, answer) in batch.into_iter().zip(answers) {
            work.answer(answer);
        }
    }

    /// The write connection, reopened if a failed commit closed it.
    fn connection(&mut self) -> Result<&mut Connection, BackendError> {
        if self.conn.is_none() {
            let conn = schema::reopen_writer(&self.options, &self.path)
                .map_err(|e| backend("reopening the write connection", e))?;
            self.conn = Some(conn);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| BackendError::new(BackendErrorKind::Other, "no write connection"))
    }
}

fn clone_error(error: &BackendError) -> BackendError {
    BackendError::new(error.kind, error.to_string())
}

/// Runs every write of a batch in one transaction, each in a savepoint.
fn run_transaction(
    conn: &mut Connection,
    batch: &[Work],
    recorded_at: Timestamp,
    faults: &fault::Faults,
) -> Outcome {
    if let [Work::Append { request, .. }] = batch {
        return append_alone(conn, request, recorded_at, faults);
    }
    let begun = faults
        .check(Step::Begin)
        .and_then(|()| conn.transaction_with_behavior(TransactionBehavior::Immediate));
    let mut tx = match begun {
        Ok(tx) => tx,
        Err(e) => return Outcome::NotStarted(backend("starting a write transaction", e)),
    };
    let mut next = match last_position(&tx) {
        Ok(last) => last + 1,
        Err(e) => return Outcome::NotStarted(backend("reading the head", e)),
    };
    let first = next;
    let mut answers = Vec::with_capacity(batch.len());
    for work in batch {
        let answer = match work {
            Work::Append { request, .. } => Answer::Append(append_in_savepoint(
                &mut tx,
                request,
                &mut next,
                recorded_at,
                faults,
            )),
            Work::SaveSnapshot { snapshot, .. } => {
                Answer::Snapshot(save_snapshot(&mut tx, snapshot, faults))
            }
        };
        if answer.is_err() && tx.is_autocommit() {
            // SQLite gave up the whole transaction (an I/O error can do
            // that): the work of earlier writes in the batch is gone too.
            if batch.len() > 1 {
                return Outcome::Lost;
            }
            return Outcome::Done {
                answers: vec![answer],
                head: None,
            };
        }
        answers.push(answer);
    }
    let committed = faults.check(Step::Commit).and_then(|()| tx.commit());
    match committed {
        Ok(()) => Outcome::Done {
            answers,
            head: (next > first).then(|| next - 1),
        },
        Err(error) => Outcome::CommitFailed { answers, error },
    }
}

/// One append with the transaction to itself: no savepoint is needed, the
/// transaction is the unit that commits or rolls back. This is the path of
/// appends made one at a time.
fn append_alone(
    conn: &mut Connection,
    request: &AppendRequest,
    recorded_at: Timestamp,
    faults: &fault::Faults,
) -> Outcome {
    let not_started = |e| Outcome::NotStarted(backend("starting a write transaction", e));
    if let Err(e) = faults.check(Step::Begin) {
        return not_started(e);
    }
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => return not_started(e),
    };
    let mut next = match last_position(&tx) {
        Ok(last) => last + 1,
        Err(e) => return Outcome::NotStarted(backend("reading the head", e)),
    };
    match insert(&tx, request, &mut next, recorded_at, faults) {
        Ok(outcome) => {
            let answers = vec![Answer::Append(Ok(outcome))];
            match faults.check(Step::Commit).and_then(|()| tx.commit()) {
                Ok(()) => Outcome::Done {
                    answers,
                    head: Some(next - 1),
                },
                Err(error) => Outcome::CommitFailed { answers, error },
            }
        }
        Err(stop) => {
            // Undo the inserts (dropping the guard rolls back) before
            // looking at what is stored, or the lookup would find them.
            drop(tx);
            Outcome::Done {
                answers: vec![Answer::Append(resolve(conn, request, stop))],
                head: None,
            }
        }
    }
}

fn last_position(tx: &Transaction<'_>) -> Result<u64, rusqlite::Error> {
    let last: i64 = tx.prepare_cached(read::HEAD)?.query_row([], |r| r.get(0))?;
    // Positions are stored from u64 values checked to fit in i64.
    Ok(u64::try_from(last).unwrap_or(0))
}

/// One append in its own savepoint: written completely, or not at all.
fn append_in_savepoint(
    tx: &mut Transaction<'_>,
    request: &AppendRequest,
    next: &mut u64,
    recorded_at: Timestamp,
    faults: &fault::Faults,
) -> Result<AppendOutcome, AppendError> {
    let failed = |e| AppendError::Backend(backend("appending", e));
    faults.check(Step::Savepoint).map_err(failed)?;
    let savepoint = tx.savepoint().map_err(failed)?;
    let start = *next;
    match insert(&savepoint, request, next, recorded_at, faults) {
        Ok(outcome) => {
            savepoint.commit().map_err(|e| {
                *next = start;
                failed(e)
            })?;
            Ok(outcome)
        }
        Err(stop) => {
            *next = start;
            // Undo this append's inserts before looking at what is stored,
            // or the lookup would find them. Dropping the guard rolls back.
            drop(savepoint);
            resolve(tx, request, stop)
        }
    }
}

/// The answer to an append that stopped before it was written: a refusal
/// or a duplicate id may be the retry of an append already committed, which
/// gets the original result.
fn resolve(
    conn: &Connection,
    request: &AppendRequest,
    stop: Stop,
) -> Result<AppendOutcome, AppendError> {
    match stop {
        Stop::Sqlite(e) => Err(AppendError::Backend(backend("appending", e))),
        Stop::Refused(refusal) => match replay(conn, request)? {
            Replay::Committed(original) => Ok(original),
            Replay::New => Err(refusal),
        },
        Stop::DuplicateId => match replay(conn, request)? {
            Replay::Committed(original) => Ok(original),
            Replay::New => Err(AppendError::Backend(BackendError::new(
                BackendErrorKind::Other,
                "a uniqueness constraint failed on an append with new event ids",
            ))),
        },
    }
}

/// Checks the expected versions and inserts the events.
fn insert(
    conn: &Connection,
    request: &AppendRequest,
    next: &mut u64,
    recorded_at: Timestamp,
    faults: &fault::Faults,
) -> Result<AppendOutcome, Stop> {
    let mut first_versions = Vec::with_capacity(request.streams().len());
    {
        let mut version_of = conn.prepare_cached(STREAM_VERSION)?;
        for s in request.streams() {
            let current: Option<i64> = version_of.query_row([s.stream.as_str()], |r| r.get(0))?;
            let current = current.and_then(|v| u64::try_from(v).ok());
            s.expected
                .check(&s.stream, current)
                .map_err(Stop::Refused)?;
            let base = current.unwrap_or(0);
            let fits = u64::try_from(s.events.len())
                .ok()
                .and_then(|n| base.checked_add(n))
                .is_some_and(|last| i64::try_from(last).is_ok());
            if !fits {
                return Err(Stop::Refused(AppendError::VersionOverflow {
                    stream: s.stream.clone(),
                }));
            }
            first_versions.push(base + 1);
        }
    }
    let mut insert = conn.prepare_cached(INSERT_EVENT)?;
    let mut recorded = Vec::with_capacity(request.event_count());
    for (s, first_version) in request.streams().iter().zip(first_versions) {
        for (event, version) in s.events.iter().zip(first_version..) {
            faults.check(Step::Insert)?;
            let position = *next;
            let metadata = (!event.metadata().is_empty()).then(|| event.metadata().to_json());
            let inserted = insert.execute(rusqlite::params![
                to_sql_int(position),
                s.stream.as_str(),
                to_sql_int(version),
                &event.event_id().as_uuid().as_bytes()[..],
                event.event_type().as_str(),
                event.schema_version(),
                event.payload().as_str(),
                metadata,
                recorded_at.as_unix_micros(),
            ]);
            match inserted {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => return Err(Stop::DuplicateId),
                Err(e) => return Err(Stop::Sqlite(e)),
            }
            *next += 1;
            recorded.push(event.clone().into_recorded(
                s.stream.clone(),
                version,
                Position(position),
                recorded_at,
            ));
        }
    }
    Ok(AppendOutcome::new(recorded))
}

/// Looks up the request's event ids: a retry of an append already
/// committed gets the original result.
fn replay(conn: &Connection, request: &AppendRequest) -> Result<Replay, AppendError> {
    let failed = |e| AppendError::Backend(backend("looking up event ids", e));
    let mut lookup = conn.prepare_cached(read::BY_EVENT_ID).map_err(failed)?;
    let mut stored = Vec::with_capacity(request.event_count());
    for event in request.events() {
        let mut rows = lookup
            .query([&event.event_id().as_uuid().as_bytes()[..]])
            .map_err(failed)?;
        let found = match rows.next().map_err(failed)? {
            Some(row) => Some(
                read::event_from_row(row, &mut read::Names::default()).map_err(|e| {
                    AppendError::Backend(BackendError::with_source(
                        BackendErrorKind::Corrupt,
                        "a stored event with a retried id is unreadable",
                        e,
                    ))
                })?,
            ),
            None => None,
        };
        stored.push(found);
    }
    request.replay_of(stored)
}

fn save_snapshot(
    tx: &mut Transaction<'_>,
    snapshot: &Snapshot,
    faults: &fault::Faults,
) -> Result<(), SnapshotError> {
    let failed = |e| SnapshotError::Backend(backend("saving a snapshot", e));
    faults.check(Step::Insert).map_err(failed)?;
    tx.prepare_cached(SAVE_SNAPSHOT)
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
