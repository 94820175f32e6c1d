//! The append path: one task per store owns a connection and commits the
//! appends that queue up meanwhile together, in one transaction.
//!
//! A group goes the cheapest way that can decide it:
//!
//! 1. **One statement**, when its appends write to distinct streams and
//!    track no checkpoint: the head lock, the checks, the rows, the new
//!    head and the notification, in one round trip and one commit
//!    (`append_one.sql` for a single append to one stream, the commonest
//!    group, whose one write to the head is also its lock;
//!    `append_set.sql` for the rest). It writes nothing when another
//!    append committed between its snapshot and its lock (what it read may
//!    be out of date) or when an id of the group is stored.
//! 2. **One function call** (`append_group`, schema version 2), which takes
//!    the lock first and then reads, so its reads are never out of date:
//!    for groups that write one stream twice or track checkpoints, and for
//!    those the statement gave back. It gives up only when an id of the
//!    group is stored.
//! 3. **The shared append sequence** ([`run_append`](annals_core::store::run_append)),
//!    in two round trips, each a pipeline the server runs in order:
//!    `BEGIN`, the head lock, then the versions of the group's streams, the
//!    stored events with the group's ids and the tracked checkpoints; and,
//!    once each append is decided in memory ([`crate::target`]), one
//!    `INSERT` of every row, the new head, the checkpoints, the notification
//!    and `COMMIT`. This one tells a retried append (the original result)
//!    from an id reused (an error).
//!
//! The writer's connection plans each statement once and never scans the
//! log where an index serves (`plan_cache_mode`, `enable_seqscan`): a plan
//! made while the log was small must not read it all once it is large.
//!
//! When the connection is lost while a group commits, the server may or may
//! not have committed: every append of the group is answered
//! [`BackendErrorKind::OutcomeUnknown`], and a retry with the same event
//! ids is safe (it returns the original result if the group did commit).
//! Any other failure leaves nothing written. The connection is dropped after
//! a failure and opened again for the next group.

use std::sync::Arc;
use std::time::{Duration, Instant};

use annals_core::store::Names;
use annals_core::{
    AppendError, AppendOutcome, AppendRequest, BackendError, BackendErrorKind, Position, Timestamp,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use crate::error::{backend, kind_of};
use crate::group::{self, Arrays};
use crate::row::{event_from_row, to_sql_int};
use crate::sql::Sql;
use crate::target::{Group, Planned};
use crate::watch::publish;

/// How many appends may wait for the writer; callers beyond wait for room.
const QUEUE: usize = 1024;
/// A group stops taking appends once it holds this many events.
const GROUP_EVENTS: usize = 10_000;

type Reply = oneshot::Sender<Result<AppendOutcome, AppendError>>;

/// The parameters of a one-parameter statement.
type Params<'a> = [&'a (dyn ToSql + Sync); 1];

struct Job {
    request: AppendRequest,
    reply: Reply,
}

/// What the writer task needs from the store.
pub(crate) struct WriterSetup {
    pub(crate) config: tokio_postgres::Config,
    pub(crate) sql: Arc<Sql>,
    pub(crate) channel: String,
    pub(crate) head: Arc<watch::Sender<Position>>,
    pub(crate) max_group: usize,
}

/// The handle appends go through.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer task on the current runtime. It connects on the
    /// first append, and ends when the last handle is dropped.
    pub(crate) fn start(setup: WriterSetup) -> Writer {
        let (jobs, queue) = mpsc::channel(QUEUE);
        tokio::spawn(run(queue, setup));
        Writer { jobs }
    }

    pub(crate) async fn append(
        &self,
        request: AppendRequest,
    ) -> Result<AppendOutcome, AppendError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { request, reply })
            .await
            .map_err(|_| BackendError::closed())?;
        answer.await.map_err(|_| {
            AppendError::Backend(BackendError::new(
                BackendErrorKind::OutcomeUnknown,
                "the store's writer stopped while the append was in flight",
            ))
        })?
    }
}

/// The writer's connection and its prepared statements.
struct Connection {
    client: Client,
    append_one: Statement,
    append_set: Statement,
    append_group: Statement,
    begin: Statement,
    lock_head: Statement,
    versions: Statement,
    by_ids: Statement,
    tracked: Statement,
    insert_events: Statement,
    set_head: Statement,
    save_checkpoints: Statement,
    notify: Statement,
    commit: Statement,
    rollback: Statement,
}

async fn connect(setup: &WriterSetup) -> Result<Connection, BackendError> {
    // The driving task ends when the connection (its client) is dropped.
    let (client, _driver) = crate::schema::connect(&setup.config)
        .await
        .map_err(|e| backend("connecting the writer", e))?;
    let prepare = |sql: &str| {
        let client = &client;
        let sql = sql.to_owned();
        async move { client.prepare(&sql).await }
    };
    let sql = &setup.sql;
    let prepared = futures_util::future::try_join_all([
        prepare(&sql.append_one),
        prepare(&sql.append_set),
        prepare(&sql.append_group),
        prepare("BEGIN"),
        prepare(&sql.lock_head),
        prepare(&sql.versions),
        prepare(&sql.by_ids),
        prepare(&sql.tracked),
        prepare(&sql.insert_events),
        prepare(&sql.set_head),
        prepare(&sql.save_checkpoints),
        prepare("SELECT pg_notify($1, $2)"),
        prepare("COMMIT"),
        prepare("ROLLBACK"),
    ])
    .await
    .map_err(|e| backend("preparing the writer's statements", e))?;
    let mut statements = prepared.into_iter();
    let mut next = || {
        statements.next().ok_or_else(|| {
            BackendError::new(BackendErrorKind::Other, "a writer statement is missing")
        })
    };
    Ok(Connection {
        append_one: next()?,
        append_set: next()?,
        append_group: next()?,
        begin: next()?,
        lock_head: next()?,
        versions: next()?,
        by_ids: next()?,
        tracked: next()?,
        insert_events: next()?,
        set_head: next()?,
        save_checkpoints: next()?,
        notify: next()?,
        commit: next()?,
        rollback: next()?,
        client,
    })
}

/// How often, at most, other processes are told of this one's commits
/// while commits follow each other: a notification costs the commit a
/// database-wide lock, so a burst of commits sends one, and the last
/// commit's is sent at most this much later.
const NOTIFY_EVERY: Duration = Duration::from_millis(5);

/// When the last notification went, and the head still to be told.
#[derive(Default)]
struct Notices {
    last: Option<Instant>,
    owed: Option<Position>,
}

impl Notices {
    /// Whether the next commit notifies.
    fn due(&self) -> bool {
        self.last.is_none_or(|last| last.elapsed() >= NOTIFY_EVERY)
    }

    /// When the owed notification is to be sent, if one is owed.
    fn deadline(&self) -> Option<tokio::time::Instant> {
        self.owed?;
        let last = self.last?;
        Some(tokio::time::Instant::from_std(last + NOTIFY_EVERY))
    }

    fn committed(&mut self, head: Option<Position>, notified: bool) {
        if notified {
            self.last = Some(Instant::now());
            self.owed = None;
        } else if head.is_some() {
            self.owed = head;
        }
    }
}

async fn run(mut queue: mpsc::Receiver<Job>, setup: WriterSetup) {
    let mut connection: Option<Connection> = None;
    let mut notices = Notices::default();
    loop {
        let first = match notices.deadline() {
            Some(deadline) => tokio::select! {
                job = queue.recv() => job,
                () = tokio::time::sleep_until(deadline) => {
                    send_owed_notice(&mut connection, &setup, &mut notices).await;
                    continue;
                }
            },
            None => queue.recv().await,
        };
        let Some(first) = first else {
            break;
        };
        let mut events = first.request.event_count();
        let mut jobs = vec![first];
        while jobs.len() < setup.max_group && events < GROUP_EVENTS {
            match queue.try_recv() {
                Ok(job) => {
                    events += job.request.event_count();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        // A caller that stopped waiting has nothing to learn: leave its
        // append out rather than commit what nobody will be told about.
        jobs.retain(|job| !job.reply.is_closed());
        if jobs.is_empty() {
            continue;
        }
        let conn = match connection.take() {
            Some(conn) if !conn.client.is_closed() => conn,
            _ => match connect(&setup).await {
                Ok(conn) => conn,
                Err(error) => {
                    answer_all(jobs, &error);
                    continue;
                }
            },
        };
        match commit(&conn, &setup, &mut jobs, notices.due()).await {
            Ok(committed) => {
                connection = Some(conn);
                notices.committed(committed.head, committed.notified);
                for (job, answer) in jobs.into_iter().zip(committed.answers) {
                    let _ = job.reply.send(answer);
                }
            }
            Err(error) => answer_all(jobs, &error),
        }
    }
    // The last commits are told before the writer goes.
    if notices.owed.is_some() {
        send_owed_notice(&mut connection, &setup, &mut notices).await;
    }
}

/// Sends the notification the last commits did not carry. A failure only
/// drops the connection: listeners read the head on their poll.
async fn send_owed_notice(
    connection: &mut Option<Connection>,
    setup: &WriterSetup,
    notices: &mut Notices,
) {
    let Some(head) = notices.owed.take() else {
        return;
    };
    let Some(conn) = connection.take() else {
        return;
    };
    let head_text = head.0.to_string();
    let sent = conn
        .client
        .execute(&conn.notify, &[&setup.channel, &head_text])
        .await;
    notices.last = Some(Instant::now());
    if sent.is_ok() {
        *connection = Some(conn);
    }
}

/// How a group went.
struct Committed {
    answers: Vec<Result<AppendOutcome, AppendError>>,
    /// The new head, when the group wrote events.
    head: Option<Position>,
    /// Whether the commit notified other processes.
    notified: bool,
}

/// Commits one group: in one statement when the append function can
/// decide it alone, else with the shared append sequence.
async fn commit(
    conn: &Connection,
    setup: &WriterSetup,
    jobs: &mut [Job],
    notify: bool,
) -> Result<Committed, BackendError> {
    if let Some(arrays) = Arrays::new(jobs.iter().map(|job| &job.request)) {
        let recorded_at = Timestamp::now();
        let channel = notify.then_some(setup.channel.as_str());
        // One statement is its own transaction: lost on the way, it may or
        // may not have committed.
        let failed = |e: tokio_postgres::Error| match kind_of(&e) {
            BackendErrorKind::Unavailable => outcome_unknown(e),
            _ => backend("committing an append", e),
        };
        let mut rows = arrays
            .run_one(&conn.client, &conn.append_one, recorded_at, channel)
            .await
            .map_err(failed)?;
        if rows.is_none() {
            rows = arrays
                .run_at_once(&conn.client, &conn.append_set, recorded_at, channel)
                .await
                .map_err(failed)?;
        }
        if rows.is_none() {
            rows = arrays
                .call(&conn.client, &conn.append_group, recorded_at, channel)
                .await
                .map_err(failed)?;
        }
        if let Some(rows) = rows {
            drop(arrays);
            // Answered: the requests go into their outcomes.
            let requests = jobs
                .iter_mut()
                .map(|job| std::mem::replace(&mut job.request, AppendRequest::new()))
                .collect();
            let answers = group::answers(requests, &rows, recorded_at)?;
            let head = answers
                .iter()
                .filter_map(|answer| answer.as_ref().ok()?.last_position())
                .max();
            if let Some(head) = head {
                publish(&setup.head, head);
            }
            return Ok(Committed {
                answers,
                head,
                notified: notify,
            });
        }
    }
    let answers = commit_group(conn, setup, jobs).await?;
    Ok(Committed {
        answers,
        head: None,
        notified: true,
    })
}

fn outcome_unknown(e: tokio_postgres::Error) -> BackendError {
    BackendError::with_source(
        BackendErrorKind::OutcomeUnknown,
        "the connection was lost while an append was committing: it may or may not have \
         committed (retrying with the same event ids is safe)",
        e,
    )
}

fn answer_all(jobs: Vec<Job>, error: &BackendError) {
    for job in jobs {
        let _ = job.reply.send(Err(AppendError::Backend(error.clone())));
    }
}

/// Commits one group; each append gets its own answer. An error is the
/// group's: nothing of it committed, or (a lost connection while
/// committing) nobody can tell.
async fn commit_group(
    conn: &Connection,
    setup: &WriterSetup,
    jobs: &[Job],
) -> Result<Vec<Result<AppendOutcome, AppendError>>, BackendError> {
    let mut streams: Vec<&str> = Vec::new();
    let mut ids: Vec<uuid::Uuid> = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for job in jobs {
        for s in job.request.streams() {
            streams.push(s.stream.as_str());
            ids.extend(s.events.iter().map(|e| *e.event_id().as_uuid()));
        }
        if let Some(tracking) = job.request.tracking() {
            names.push(&tracking.name);
        }
    }
    streams.sort_unstable();
    streams.dedup();
    let client = &conn.client;
    let (by_stream, by_id, by_name): (Params<'_>, Params<'_>, Params<'_>) =
        ([&streams], [&ids], [&names]);
    // Every answer is awaited and the first failure in pipeline order is
    // the one reported: once a statement fails, the server refuses the rest
    // of the transaction ("current transaction is aborted"), an error that
    // says nothing of the cause (a lock wait past the statement timeout,
    // say). `try_join!` would report whichever failure it polled first.
    let (begun, head, versions, stored, tracked) = tokio::join!(
        client.execute(&conn.begin, &[]),
        client.query_one(&conn.lock_head, &[]),
        client.query(&conn.versions, &by_stream),
        client.query(&conn.by_ids, &by_id),
        client.query(&conn.tracked, &by_name),
    );
    let failed = |e| backend("reading the streams an append writes to", e);
    begun.map_err(failed)?;
    let head = head.map_err(failed)?;
    let (versions, stored, tracked) = (
        versions.map_err(failed)?,
        stored.map_err(failed)?,
        tracked.map_err(failed)?,
    );
    let corrupt = |what: &str| BackendError::new(BackendErrorKind::Corrupt, what.to_owned());
    let mut group = Group {
        head: u64::try_from(head.try_get::<_, i64>(0).map_err(|_| corrupt("the head"))?)
            .map_err(|_| corrupt("the head is negative"))?,
        ..Group::default()
    };
    for row in &versions {
        let stream: String = row.try_get(0).map_err(|_| corrupt("a stream id"))?;
        let version: i64 = row.try_get(1).map_err(|_| corrupt("a stream version"))?;
        let version = u64::try_from(version).map_err(|_| corrupt("a negative version"))?;
        group.versions.insert(stream, version);
    }
    let mut names_read = Names::default();
    for row in &stored {
        let event = event_from_row(row, &mut names_read).map_err(|e| {
            BackendError::with_source(
                BackendErrorKind::Corrupt,
                "a stored event with a retried id is unreadable",
                e,
            )
        })?;
        group.stored.insert(event.event_id, event);
    }
    for row in &tracked {
        let name: String = row.try_get(0).map_err(|_| corrupt("a checkpoint name"))?;
        let position: i64 = row
            .try_get(1)
            .map_err(|_| corrupt("a checkpoint position"))?;
        let position = u64::try_from(position).map_err(|_| corrupt("a negative checkpoint"))?;
        group.checkpoints.insert(name, Position(position));
    }

    let recorded_at = Timestamp::now();
    let planned: Vec<Planned> = jobs
        .iter()
        .map(|job| group.plan(&job.request, recorded_at))
        .collect();
    if group.planned.is_empty() {
        client
            .execute(&conn.rollback, &[])
            .await
            .map_err(|e| backend("ending an append that wrote nothing", e))?;
    } else {
        write_group(conn, setup, &group).await?;
        publish(&setup.head, Position(group.head));
    }
    let mut outcomes: Vec<Option<AppendOutcome>> = std::mem::take(&mut group.planned)
        .into_iter()
        .map(Some)
        .collect();
    Ok(planned
        .into_iter()
        .map(|planned| match planned {
            Planned::Answered(answer) => answer,
            Planned::Inserted(i) => outcomes.get_mut(i).and_then(Option::take).ok_or_else(|| {
                AppendError::Backend(BackendError::new(
                    BackendErrorKind::Other,
                    "an append's planned rows went missing",
                ))
            }),
        })
        .collect())
}

/// The second round trip: every row, the head, the checkpoints, the
/// notification and the commit.
async fn write_group(
    conn: &Connection,
    setup: &WriterSetup,
    group: &Group,
) -> Result<(), BackendError> {
    let rows = group.planned.iter().flat_map(AppendOutcome::events);
    let count = group.planned.iter().map(|o| o.events().len()).sum();
    let mut positions = Vec::with_capacity(count);
    let mut streams = Vec::with_capacity(count);
    let mut versions = Vec::with_capacity(count);
    let mut ids = Vec::with_capacity(count);
    let mut types = Vec::with_capacity(count);
    let mut schema_versions = Vec::with_capacity(count);
    let mut payloads = Vec::with_capacity(count);
    let mut metadata = Vec::with_capacity(count);
    let mut recorded = Vec::with_capacity(count);
    for event in rows {
        positions.push(to_sql_int(event.position.0));
        streams.push(event.stream_id.as_str());
        versions.push(to_sql_int(event.version));
        ids.push(*event.event_id.as_uuid());
        types.push(event.event_type.as_str());
        schema_versions.push(i32::try_from(event.schema_version).unwrap_or(i32::MAX));
        payloads.push(event.payload.as_str());
        metadata.push((!event.metadata.is_empty()).then(|| event.metadata.to_json()));
        recorded.push(event.recorded_at.as_unix_micros());
    }
    let checkpoints = group.final_checkpoints();
    let names: Vec<&str> = checkpoints.iter().map(|(n, _, _)| n.as_str()).collect();
    let cp_positions: Vec<i64> = checkpoints
        .iter()
        .map(|(_, c, _)| to_sql_int(c.position.0))
        .collect();
    let cp_ids: Vec<Option<uuid::Uuid>> = checkpoints
        .iter()
        .map(|(_, c, _)| c.event_id.map(|id| *id.as_uuid()))
        .collect();
    let cp_versions: Vec<i64> = checkpoints
        .iter()
        .map(|(_, c, _)| i64::from(c.version))
        .collect();
    let cp_saved: Vec<i64> = checkpoints
        .iter()
        .map(|(_, _, at)| at.as_unix_micros())
        .collect();
    let head = to_sql_int(group.head);
    let head_text = group.head.to_string();
    let client = &conn.client;
    let rows: [&(dyn ToSql + Sync); 9] = [
        &positions,
        &streams,
        &versions,
        &ids,
        &types,
        &schema_versions,
        &payloads,
        &metadata,
        &recorded,
    ];
    let new_head: [&(dyn ToSql + Sync); 1] = [&head];
    let checkpoint_rows: [&(dyn ToSql + Sync); 5] =
        [&names, &cp_positions, &cp_ids, &cp_versions, &cp_saved];
    let notification: [&(dyn ToSql + Sync); 2] = [&setup.channel, &head_text];
    // As in the first round trip: the first failure in pipeline order is
    // the cause.
    let (inserted, head_set, checkpoints_saved, notified, committed) = tokio::join!(
        client.execute(&conn.insert_events, &rows),
        client.execute(&conn.set_head, &new_head),
        async {
            if names.is_empty() {
                return Ok(0);
            }
            client
                .execute(&conn.save_checkpoints, &checkpoint_rows)
                .await
        },
        client.execute(&conn.notify, &notification),
        client.execute(&conn.commit, &[]),
    );
    let written = inserted
        .and(head_set)
        .and(checkpoints_saved)
        .and(notified)
        .and(committed);
    match written {
        Ok(_) => Ok(()),
        Err(e) if kind_of(&e) == BackendErrorKind::Unavailable => Err(outcome_unknown(e)),
        Err(e) => Err(backend("committing an append", e)),
    }
}
