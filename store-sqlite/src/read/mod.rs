//! The read side: a small pool of read-only connections, and every query a
//! reader makes.
//!
//! Every read is one page (at most [`MAX_READ_LIMIT`](annals_core::store::MAX_READ_LIMIT)
//! rows) in its own read transaction, on a blocking thread. Long scans are
//! many pages, so no reader pins the WAL for long and memory stays bounded
//! by the page size, whatever the size of the log.

mod checkpoints;
mod filter;

pub(crate) use checkpoints::load_checkpoint;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use annals_core::store::{snapshot_from_stored, stream_read_start, ReplayEvent, Snapshot};
use annals_core::{
    BackendError, Checkpoint, Direction, HandlerRequest, Page, Position, ReadAll, ReadError,
    ReadStream, RecordedEvent, RequestCounts, RequestFilter, SkippedEvent, SnapshotError, StreamId,
    Timestamp,
};
use rusqlite::Connection;
use tokio::sync::Semaphore;

use crate::error::backend;
use crate::options::SqliteOptions;
use crate::row::{query_events, query_replay_events, to_sql_int};
use crate::schema;

const STREAM_FORWARD: &str = include_str!("stream_forward.sql");
const STREAM_BACKWARD: &str = include_str!("stream_backward.sql");
const REPLAY_FORWARD: &str = include_str!("replay_forward.sql");
const REPLAY_BACKWARD: &str = include_str!("replay_backward.sql");
const HEAD: &str = include_str!("head.sql");
const SNAPSHOT: &str = include_str!("snapshot.sql");

/// Read-only connections, opened on first use and reused.
pub(crate) struct ReadPool {
    options: SqliteOptions,
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

impl ReadPool {
    pub(crate) fn new(options: SqliteOptions, path: PathBuf) -> Arc<Self> {
        let size = options.read_pool_size;
        Arc::new(ReadPool {
            options,
            path,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(size),
        })
    }

    /// A page of one stream's events.
    pub(crate) async fn stream(
        self: &Arc<Self>,
        stream: &StreamId,
        read: ReadStream,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        let Some((sql, params, limit)) =
            stream_query(stream, read, STREAM_FORWARD, STREAM_BACKWARD)
        else {
            return Ok(Vec::new());
        };
        self.run(move |conn| query_events(conn, sql, params, limit))
            .await
    }

    /// A page of one stream's events, with only what replay needs.
    pub(crate) async fn replay(
        self: &Arc<Self>,
        stream: &StreamId,
        read: ReadStream,
    ) -> Result<Vec<ReplayEvent>, ReadError> {
        let Some((sql, params, limit)) =
            stream_query(stream, read, REPLAY_FORWARD, REPLAY_BACKWARD)
        else {
            return Ok(Vec::new());
        };
        self.run(move |conn| query_replay_events(conn, sql, params, limit))
            .await
    }

    /// A page of the global log, and how far it was read.
    pub(crate) async fn log(self: &Arc<Self>, read: ReadAll) -> Result<Page, ReadError> {
        let start = read.start();
        let limit = read.max_count();
        let query = filter::log_query(start.0, read.filter(), limit);
        self.run(move |conn| {
            // The head is read first, outside the page's query: every event
            // up to it had committed when the page's query began (positions
            // commit in order), so a page that is not full looked through it.
            let head = head(conn)?;
            let events = match (&query, limit) {
                (Some(query), 1..) => query_events(
                    conn,
                    &query.sql,
                    rusqlite::params_from_iter(query.params.iter()),
                    limit,
                )?,
                _ => Vec::new(),
            };
            let read_through = match events.last() {
                Some(last) if events.len() == limit => last.position,
                Some(last) => last.position.max(head).max(start),
                None if limit == 0 => start,
                None => head.max(start),
            };
            Ok(Page::new(events, read_through))
        })
        .await
    }

    /// The position of the newest committed event.
    pub(crate) async fn head(self: &Arc<Self>) -> Result<Position, ReadError> {
        self.run(head).await
    }

    /// The newest snapshot of a stream.
    pub(crate) async fn snapshot(
        self: &Arc<Self>,
        stream: &StreamId,
    ) -> Result<Option<Snapshot>, SnapshotError> {
        let stream = stream.clone();
        self.run(move |conn| load_snapshot(conn, stream)).await
    }

    /// The checkpoint saved under a follower's name.
    pub(crate) async fn checkpoint(
        self: &Arc<Self>,
        name: &str,
    ) -> Result<Option<Checkpoint>, BackendError> {
        let name = name.to_owned();
        self.run(move |conn| checkpoints::load_checkpoint(conn, &name))
            .await
    }

    /// The events a follower skipped, oldest position first.
    pub(crate) async fn skipped_events(
        self: &Arc<Self>,
        name: &str,
    ) -> Result<Vec<SkippedEvent>, BackendError> {
        let name = name.to_owned();
        self.run(move |conn| checkpoints::skipped_events(conn, &name))
            .await
    }

    /// Durable handlers' requests the filter matches.
    pub(crate) async fn requests(
        self: &Arc<Self>,
        filter: &RequestFilter,
        now: Timestamp,
    ) -> Result<Vec<HandlerRequest>, BackendError> {
        let filter = filter.clone();
        self.run(move |conn| crate::requests::list_requests(conn, &filter, now))
            .await
    }

    /// How many requests stand where.
    pub(crate) async fn request_counts(
        self: &Arc<Self>,
        now: Timestamp,
    ) -> Result<RequestCounts, BackendError> {
        self.run(move |conn| crate::requests::request_counts(conn, now))
            .await
    }

    /// How many requests are pending or running.
    pub(crate) async fn unsettled_requests(self: &Arc<Self>) -> Result<u64, BackendError> {
        self.run(crate::requests::unsettled_requests).await
    }

    /// Runs `read` on a pooled connection, on a blocking thread.
    async fn run<T, E, F>(self: &Arc<Self>, read: F) -> Result<T, E>
    where
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<BackendError> + Send + 'static,
    {
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| E::from(BackendError::closed()))?;
        let pool = Arc::clone(self);
        let outcome = crate::blocking::run(move || {
            let conn = pool.take().map_err(E::from)?;
            let result = read(&conn);
            pool.put(conn);
            result
        })
        .await;
        drop(permit);
        outcome.map_err(E::from)?
    }

    fn take(&self) -> Result<Connection, BackendError> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        match idle {
            Some(conn) => Ok(conn),
            None => schema::open_reader(&self.options, &self.path)
                .map_err(|e| backend("opening a read connection", e)),
        }
    }

    fn put(&self, conn: Connection) {
        // After `close`, a connection coming back from a read is closed,
        // not kept past the store.
        if self.permits.is_closed() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
    }

    /// Refuses every later read and drops the idle connections.
    pub(crate) fn close(&self) {
        self.permits.close();
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }
}

/// The position of the newest committed event, on any connection.
pub(crate) fn head(conn: &Connection) -> Result<Position, ReadError> {
    let head: i64 = conn
        .prepare_cached(HEAD)
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(|e| ReadError::Backend(backend("reading the head", e)))?;
    // Positions are stored from u64 values checked to fit in i64.
    Ok(Position(u64::try_from(head).unwrap_or(0)))
}

/// The query and parameters of a stream read, or `None` when it asks for
/// nothing (a limit of 0).
fn stream_query(
    stream: &StreamId,
    read: ReadStream,
    forward: &'static str,
    backward: &'static str,
) -> Option<(&'static str, (String, i64, i64), usize)> {
    let limit = read.max_count();
    let (direction, from) = stream_read_start(&read)?;
    let sql = match direction {
        Direction::Backward => backward,
        _ => forward,
    };
    let params = (
        stream.as_str().to_owned(),
        to_sql_int(from),
        to_sql_int(limit as u64),
    );
    Some((sql, params, limit))
}

fn load_snapshot(conn: &Connection, stream: StreamId) -> Result<Option<Snapshot>, SnapshotError> {
    let failed = |e| SnapshotError::Backend(backend("reading a snapshot", e));
    let mut statement = conn.prepare_cached(SNAPSHOT).map_err(failed)?;
    let mut rows = statement.query([stream.as_str()]).map_err(failed)?;
    let Some(row) = rows.next().map_err(failed)? else {
        return Ok(None);
    };
    let corrupt = |reason: &str| SnapshotError::Corrupt {
        stream: stream.clone(),
        reason: reason.to_owned(),
    };
    let version: i64 = row
        .get(0)
        .map_err(|_| corrupt("version is not an integer"))?;
    let state_version: i64 = row
        .get(1)
        .map_err(|_| corrupt("state version is not an integer"))?;
    let state: String = row.get(2).map_err(|_| corrupt("state is not text"))?;
    let taken_at: i64 = row
        .get(3)
        .map_err(|_| corrupt("taken_at is not an integer"))?;
    snapshot_from_stored(&stream, version, state_version, state, taken_at).map(Some)
}
