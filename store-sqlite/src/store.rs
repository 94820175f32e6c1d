//! [`SqliteStore`]: the store contract on one SQLite file.
//!
//! The store itself only wires its parts together: the writer (appends,
//! snapshots, checkpoints and handler requests), the read pool (every
//! query), and the head (what watchers see).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use annals_core::store::{ReplayEvent, Snapshot};
use annals_core::{
    AppendError, AppendOutcome, AppendRequest, BackendError, BackendErrorKind, Checkpoint,
    CheckpointStore, Claim, EventStore, Finish, HandlerRequest, HandlerStore, HeadWatch, Limits,
    NewRequest, Page, Position, ReadAll, ReadError, ReadStream, RecordedEvent, RequestCounts,
    RequestFilter, RequestId, SkippedEvent, SnapshotError, SnapshotStore, StreamId, Timestamp,
};
use async_trait::async_trait;
use rusqlite::Connection;

use crate::error::{backend, OpenError};
use crate::options::{Access, SqliteOptions};
use crate::read::{self, ReadPool};
use crate::schema;
use crate::watch::Head;
use crate::writer::{CheckpointSave, RequestAnswer, RequestWork, Writer};

/// The embedded event store: one SQLite file in WAL mode, a writer that
/// commits queued appends together, and a pool of read connections.
///
/// Clones share the same store. Dropping the last clone finishes the
/// commit in progress and closes the file; [`SqliteStore::close`] does the
/// same explicitly.
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
/// let accounts = Repository::<Account, _>::new(store)?;
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
    /// `None` for a read-only store.
    writer: Option<Arc<Writer>>,
    reads: Arc<ReadPool>,
    head: Arc<Head>,
    /// The directory of a temporary store, removed after the writer stops.
    temporary: Option<tempfile::TempDir>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Stopping the writer waits for the commit in progress, so that the
        // file can be reopened (or removed) right away.
        self.reads.close();
        if let Some(writer) = self.writer.take() {
            writer.close();
        }
        self.head.close();
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
        let (conn, head) = opening.await.map_err(|source| OpenError::Backend {
            path: path.clone(),
            source,
        })??;
        let head = Head::new(head, options.clone(), path.clone());
        let writer = match conn {
            Some(conn) => Some(Arc::new(
                Writer::start(conn, options.clone(), path.clone(), head.clone()).map_err(
                    |source| OpenError::Backend {
                        path: path.clone(),
                        source,
                    },
                )?,
            )),
            None => None,
        };
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                limits: options.limits,
                reads: ReadPool::new(options, path.clone()),
                path,
                writer,
                head,
                temporary,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Stops the store: the commit in progress finishes and is answered,
    /// queued and later appends fail with [`BackendErrorKind::Closed`], and
    /// so do later reads; head watchers get `StoreClosed`. With relaxed
    /// durability, what was not yet synced is synced. Waits until all of it
    /// is done. Closing twice is harmless.
    pub async fn close(&self) {
        self.inner.reads.close();
        if let Some(writer) = self.inner.writer.clone() {
            if let Err(e) = crate::blocking::run(move || writer.close()).await {
                tracing::warn!(error = %e, "closing the writer failed");
            }
        }
        self.inner.head.close();
    }

    /// The writer's counts, for tests of how appends are committed.
    #[cfg(test)]
    pub(crate) fn writer_stats(&self) -> crate::writer::WriterStats {
        self.inner
            .writer
            .as_ref()
            .map(|w| w.stats())
            .unwrap_or_default()
    }

    fn writer(&self) -> Result<&Writer, BackendError> {
        self.inner.writer.as_deref().ok_or_else(|| {
            BackendError::new(BackendErrorKind::ReadOnly, "the store was opened read-only")
        })
    }
}

/// Opens the file on a blocking thread: the write connection (none when
/// read-only) and the head position.
fn open_files(
    options: &SqliteOptions,
    path: &Path,
) -> Result<(Option<Connection>, Position), OpenError> {
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
    let head = read::head(&conn).map_err(|e| OpenError::Backend {
        path: path.to_path_buf(),
        source: match e {
            ReadError::Backend(e) => e,
            other => {
                BackendError::with_source(BackendErrorKind::Corrupt, "reading the head", other)
            }
        },
    })?;
    match options.access {
        Access::ReadOnly => Ok((None, head)),
        _ => Ok((Some(conn), head)),
    }
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, AppendError> {
        request.check(&self.inner.limits)?;
        self.writer()?.append(request).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        read: ReadStream,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        self.inner.reads.stream(stream, read).await
    }

    async fn read_stream_for_replay(
        &self,
        stream: &StreamId,
        read: ReadStream,
    ) -> Result<Vec<ReplayEvent>, ReadError> {
        self.inner.reads.replay(stream, read).await
    }

    async fn read_all(&self, read: ReadAll) -> Result<Page, ReadError> {
        self.inner.reads.log(read).await
    }

    async fn head(&self) -> Result<Position, ReadError> {
        self.inner.reads.head().await
    }

    fn watch_head(&self) -> HeadWatch {
        self.inner.head.watch()
    }
}

#[async_trait]
impl SnapshotStore for SqliteStore {
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), SnapshotError> {
        self.writer()?.save_snapshot(snapshot).await
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, SnapshotError> {
        self.inner.reads.snapshot(stream).await
    }
}

#[async_trait]
impl CheckpointStore for SqliteStore {
    async fn load_checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, BackendError> {
        self.inner.reads.checkpoint(name).await
    }

    async fn save_checkpoint(
        &self,
        name: &str,
        checkpoint: Checkpoint,
        skipped: &[SkippedEvent],
    ) -> Result<(), BackendError> {
        let save = CheckpointSave::new(name, checkpoint, skipped)?;
        self.writer()?.save_checkpoint(save).await
    }

    async fn skipped_events(&self, name: &str) -> Result<Vec<SkippedEvent>, BackendError> {
        self.inner.reads.skipped_events(name).await
    }

    async fn reset_checkpoint(&self, name: &str) -> Result<(), BackendError> {
        self.writer()?.reset_checkpoint(name).await
    }
}

#[async_trait]
impl HandlerStore for SqliteStore {
    async fn enqueue_requests(
        &self,
        checkpoints: &[(String, Checkpoint)],
        requests: &[NewRequest],
        now: Timestamp,
    ) -> Result<(), BackendError> {
        let checkpoints = checkpoints
            .iter()
            .map(|(name, checkpoint)| CheckpointSave::new(name, *checkpoint, &[]))
            .collect::<Result<_, _>>()?;
        self.writer()?
            .requests(RequestWork::Enqueue {
                checkpoints,
                requests: requests.to_vec(),
                now,
            })
            .await
            .map(drop)
    }

    async fn claim_requests(&self, claim: &Claim) -> Result<Vec<HandlerRequest>, BackendError> {
        match self
            .writer()?
            .requests(RequestWork::Claim(claim.clone()))
            .await?
        {
            RequestAnswer::Claimed(claimed) => Ok(claimed),
            _ => Err(mixed_up()),
        }
    }

    async fn renew_claims(
        &self,
        owner: &str,
        ids: &[RequestId],
        until: Timestamp,
    ) -> Result<(), BackendError> {
        let work = RequestWork::Renew {
            owner: owner.to_owned(),
            ids: ids.to_vec(),
            until,
        };
        self.writer()?.requests(work).await.map(drop)
    }

    async fn finish_request(
        &self,
        id: RequestId,
        owner: &str,
        finish: Finish,
        now: Timestamp,
    ) -> Result<bool, BackendError> {
        let work = RequestWork::Finish {
            id,
            owner: owner.to_owned(),
            finish,
            now,
        };
        changed(self.writer()?.requests(work).await?)
    }

    async fn list_requests(
        &self,
        filter: &RequestFilter,
        now: Timestamp,
    ) -> Result<Vec<HandlerRequest>, BackendError> {
        self.inner.reads.requests(filter, now).await
    }

    async fn requeue_requests(
        &self,
        filter: &RequestFilter,
        now: Timestamp,
    ) -> Result<u64, BackendError> {
        let work = RequestWork::Requeue {
            filter: filter.clone(),
            now,
        };
        match self.writer()?.requests(work).await? {
            RequestAnswer::Count(count) => Ok(count),
            _ => Err(mixed_up()),
        }
    }

    async fn discard_request(
        &self,
        id: RequestId,
        reason: &str,
        now: Timestamp,
    ) -> Result<bool, BackendError> {
        let work = RequestWork::Discard {
            id,
            reason: reason.to_owned(),
            now,
        };
        changed(self.writer()?.requests(work).await?)
    }

    async fn request_counts(&self, now: Timestamp) -> Result<RequestCounts, BackendError> {
        self.inner.reads.request_counts(now).await
    }

    async fn unsettled_requests(&self) -> Result<u64, BackendError> {
        self.inner.reads.unsettled_requests().await
    }
}

fn changed(answer: RequestAnswer) -> Result<bool, BackendError> {
    match answer {
        RequestAnswer::Changed(changed) => Ok(changed),
        _ => Err(mixed_up()),
    }
}

/// The writer answered a write with another kind of answer: a bug.
fn mixed_up() -> BackendError {
    BackendError::new(
        BackendErrorKind::Other,
        "the writer answered a request write with another kind of answer",
    )
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
