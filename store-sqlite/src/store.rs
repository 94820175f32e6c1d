//! [`SqliteStore`]: the store contract on one SQLite file.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use annals_core::{
    AppendError, AppendOutcome, AppendRequest, BackendError, BackendErrorKind, Direction,
    EventStore, HeadWatch, Limits, Payload, Position, ReadAll, ReadError, ReadStream,
    RecordedEvent, ReplayEvent, Snapshot, SnapshotError, SnapshotStore, StreamFilter, StreamId,
    Timestamp,
};
use async_trait::async_trait;
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::{backend, OpenError};
use crate::options::{Access, SqliteOptions};
use crate::read::{self, prefix_bounds, query_events, query_replay_events, to_sql_int, ReadPool};
use crate::schema;
use crate::writer::{Command, Work, Writer};

/// The embedded event store: one SQLite file in WAL mode, one writer thread
/// that commits queued appends together, and a pool of read connections.
///
/// Clones share the same store. Dropping the last clone stops the writer
/// after the commit in progress and closes the file; [`SqliteStore::close`]
/// does the same explicitly and waits for it.
///
/// ```
/// use annals_core::testkit::bank::{Account, AccountCommand};
/// use annals_core::{CommandContext, Repository};
/// use annals_sqlite::SqliteStore;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("bank.db");
/// let store = SqliteStore::open(&path).await?;
/// let accounts = Repository::<Account, _>::new(store);
/// accounts.execute("42", AccountCommand::Open { owner: "ada".into() }, &CommandContext::new()).await?;
/// assert_eq!(accounts.load("42").await?.version, 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    limits: Limits,
    /// `None` for a read-only store, and once the store is dropped.
    commands: Option<mpsc::Sender<Command>>,
    reads: Arc<ReadPool>,
    head: watch::Receiver<Position>,
    /// Kept for read-only stores, which have no writer to publish a head.
    _head_sender: Option<watch::Sender<Position>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The directory of a temporary store, removed after the writer stops.
    temporary: Option<tempfile::TempDir>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish and close the file; wait
        // for it so that the file can be reopened (or removed) right away.
        self.commands = None;
        self.reads.close();
        let writer = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(writer) = writer {
            if writer.join().is_err() {
                tracing::error!("the SQLite writer thread panicked");
            }
        }
        if let Some(dir) = self.temporary.take() {
            if let Err(e) = dir.close() {
                tracing::warn!(error = %e, "could not remove a temporary store");
            }
        }
    }
}

impl SqliteStore {
    /// Options to open a store with; see [`SqliteOptions`] for the defaults.
    pub fn options() -> SqliteOptions {
        SqliteOptions::default()
    }

    /// Opens (or creates) the store in the file at `path`, with the default
    /// options: full durability, the file created if missing, an older
    /// annals file migrated.
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteStore, OpenError> {
        SqliteStore::options().path(path).open().await
    }

    /// Opens a store in a new temporary directory that is removed when the
    /// last clone of the store is dropped. For tests and examples.
    pub async fn open_temporary() -> Result<SqliteStore, OpenError> {
        SqliteStore::open_temporary_with(SqliteStore::options()).await
    }

    /// [`SqliteStore::open_temporary`] with options (their path is replaced).
    pub async fn open_temporary_with(options: SqliteOptions) -> Result<SqliteStore, OpenError> {
        let dir = tempfile::Builder::new()
            .prefix("annals-")
            .tempdir()
            .map_err(|e| OpenError::Backend {
                path: std::env::temp_dir(),
                source: BackendError::with_source(
                    BackendErrorKind::Io,
                    "creating a temporary directory",
                    e,
                ),
            })?;
        let options = options.path(dir.path().join("events.db"));
        options.check()?;
        SqliteStore::open_with(options, Some(dir)).await
    }

    pub(crate) async fn open_with(
        options: SqliteOptions,
        temporary: Option<tempfile::TempDir>,
    ) -> Result<SqliteStore, OpenError> {
        let Some(path) = options.path.clone() else {
            return Err(OpenError::InvalidOptions {
                setting: "path",
                reason: "must be set".into(),
            });
        };
        let opening = {
            let (options, path) = (options.clone(), path.clone());
            crate::blocking::run(move || open_files(&options, &path))
        };
        let (writer_conn, head) = opening.await.map_err(|source| OpenError::Backend {
            path: path.clone(),
            source,
        })??;
        let (head_sender, head_receiver) = watch::channel(Position(head));
        let reads = ReadPool::new(options.clone(), path.clone());
        let limits = options.limits;
        let (commands, writer, head_sender) = match writer_conn {
            Some(conn) => {
                let (sender, receiver) = mpsc::channel(options.queue_capacity);
                let writer = Writer::new(conn, options, path.clone(), receiver, head_sender);
                let thread = std::thread::Builder::new()
                    .name("annals-sqlite-writer".into())
                    .spawn(move || writer.run())
                    .map_err(|e| OpenError::Backend {
                        path: path.clone(),
                        source: BackendError::with_source(
                            BackendErrorKind::Other,
                            "starting the writer thread",
                            e,
                        ),
                    })?;
                (Some(sender), Some(thread), None)
            }
            None => (None, None, Some(head_sender)),
        };
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path,
                limits,
                commands,
                reads,
                head: head_receiver,
                _head_sender: head_sender,
                writer: Mutex::new(writer),
                temporary,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Stops the store: the commit in progress finishes and is answered,
    /// queued and later appends fail with
    /// [`BackendErrorKind::Closed`], and so do later reads. Waits until the
    /// writer has stopped. Closing twice is harmless.
    pub async fn close(&self) {
        self.inner.reads.close();
        if let Some(commands) = &self.inner.commands {
            let (done, stopped) = oneshot::channel();
            if commands.send(Command::Close(done)).await.is_ok() {
                let _ = stopped.await;
            }
        }
    }

    async fn submit<T>(
        &self,
        work: impl FnOnce(oneshot::Sender<T>) -> Work,
    ) -> Result<T, BackendError> {
        let Some(commands) = &self.inner.commands else {
            return Err(BackendError::new(
                BackendErrorKind::ReadOnly,
                "the store was opened read-only",
            ));
        };
        let (reply, answer) = oneshot::channel();
        commands
            .send(Command::Work(work(reply)))
            .await
            .map_err(|_| BackendError::closed())?;
        answer.await.map_err(|_| BackendError::closed())
    }
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
    if limit == 0 {
        return None;
    }
    let (sql, from) = match read.direction() {
        Direction::Backward => (backward, read.start().unwrap_or(u64::MAX)),
        _ => (forward, read.start().unwrap_or(1)),
    };
    let params = (
        stream.as_str().to_owned(),
        to_sql_int(from),
        to_sql_int(limit as u64),
    );
    Some((sql, params, limit))
}

/// Opens the file on a blocking thread: the write connection (none when
/// read-only) and the head position.
fn open_files(
    options: &SqliteOptions,
    path: &Path,
) -> Result<(Option<Connection>, u64), OpenError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(OpenError::MissingDirectory {
            path: path.to_path_buf(),
        });
    }
    let conn = match options.access {
        Access::ReadOnly => {
            if !path.exists() {
                return Err(OpenError::MissingFile {
                    path: path.to_path_buf(),
                });
            }
            let conn = schema::open_reader(options, path).map_err(|e| OpenError::Backend {
                path: path.to_path_buf(),
                source: backend("opening read-only", e),
            })?;
            schema::check_readable(&conn, path)?;
            conn
        }
        _ => schema::open_writer(options, path)?,
    };
    let head: i64 =
        conn.query_row(read::HEAD, [], |r| r.get(0))
            .map_err(|e| OpenError::Backend {
                path: path.to_path_buf(),
                source: backend("reading the head", e),
            })?;
    let head = u64::try_from(head).unwrap_or(0);
    match options.access {
        Access::ReadOnly => Ok((None, head)),
        _ => Ok((Some(conn), head)),
    }
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, AppendError> {
        request.check(&self.inner.limits)?;
        self.submit(|reply| Work::Append { request, reply }).await?
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        read: ReadStream,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        let Some((sql, params, limit)) =
            stream_query(stream, read, read::STREAM_FORWARD, read::STREAM_BACKWARD)
        else {
            return Ok(Vec::new());
        };
        self.inner
            .reads
            .run(move |conn| query_events(conn, sql, params, limit))
            .await
    }

    async fn read_stream_for_replay(
        &self,
        stream: &StreamId,
        read: ReadStream,
    ) -> Result<Vec<ReplayEvent>, ReadError> {
        let Some((sql, params, limit)) =
            stream_query(stream, read, read::REPLAY_FORWARD, read::REPLAY_BACKWARD)
        else {
            return Ok(Vec::new());
        };
        self.inner
            .reads
            .run(move |conn| query_replay_events(conn, sql, params, limit))
            .await
    }

    async fn read_all(&self, read: ReadAll) -> Result<Vec<RecordedEvent>, ReadError> {
        let limit = read.max_count();
        let (lower, upper) = match read.stream_filter() {
            // No stream's category holds a '-': such a filter matches nothing.
            StreamFilter::Category(c) if c.contains('-') => return Ok(Vec::new()),
            StreamFilter::Category(c) => {
                let (lower, upper) = prefix_bounds(&format!("{c}-"));
                (Some(lower), upper)
            }
            StreamFilter::Prefix(p) => {
                let (lower, upper) = prefix_bounds(p);
                (Some(lower), upper)
            }
            _ => (None, None),
        };
        let types = match read.event_type_filter() {
            Some([]) => return Ok(Vec::new()),
            Some(types) => {
                let names: Vec<&str> = types.iter().map(|t| t.as_str()).collect();
                Some(serde_json::Value::from(names).to_string())
            }
            None => None,
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let params = (
            to_sql_int(read.start().0),
            lower,
            upper,
            types,
            to_sql_int(limit as u64),
        );
        self.inner
            .reads
            .run(move |conn| query_events(conn, read::ALL, params, limit))
            .await
    }

    async fn head(&self) -> Result<Position, ReadError> {
        let head: i64 = self
            .inner
            .reads
            .run(|conn| {
                conn.prepare_cached(read::HEAD)
                    .and_then(|mut s| s.query_row([], |r| r.get(0)))
                    .map_err(|e| ReadError::Backend(backend("reading the head", e)))
            })
            .await?;
        Ok(Position(u64::try_from(head).unwrap_or(0)))
    }

    fn watch_head(&self) -> HeadWatch {
        HeadWatch::new(self.inner.head.clone())
    }
}

#[async_trait]
impl SnapshotStore for SqliteStore {
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), SnapshotError> {
        self.submit(|reply| Work::SaveSnapshot { snapshot, reply })
            .await?
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, SnapshotError> {
        let stream = stream.clone();
        self.inner
            .reads
            .run(move |conn| load_snapshot(conn, stream))
            .await
    }
}

fn load_snapshot(conn: &Connection, stream: StreamId) -> Result<Option<Snapshot>, SnapshotError> {
    let failed = |e| SnapshotError::Backend(backend("reading a snapshot", e));
    let mut statement = conn.prepare_cached(read::SNAPSHOT).map_err(failed)?;
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
    Ok(Some(Snapshot {
        stream_id: stream.clone(),
        version: u64::try_from(version).map_err(|_| corrupt("version is negative"))?,
        state_version: u32::try_from(state_version)
            .map_err(|_| corrupt("state version is out of range"))?,
        state: Payload::from_stored(state),
        taken_at: Timestamp::from_unix_micros(taken_at),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keeps the store usable as `Arc<dyn EventStore>`.
    #[allow(dead_code)]
    fn store_is_a_dyn_event_store(store: SqliteStore) -> Arc<dyn EventStore> {
        Arc::new(store)
    }
}
