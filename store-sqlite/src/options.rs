//! How a [`SqliteStore`](crate::SqliteStore) is opened: the file, durability,
//! the writer's queue and batches, the read pool and the size limits.

use std::path::{Path, PathBuf};
use std::time::Duration;

use annals_core::Limits;

use crate::error::OpenError;
use crate::SqliteStore;

/// What an acknowledged append survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// An acknowledged append survives a process crash and a power loss
    /// (`PRAGMA synchronous = FULL`: the WAL is synced at every commit).
    #[default]
    Full,
    /// An acknowledged append survives a process crash; a power loss or an
    /// operating-system crash may lose the commits of the last
    /// [`SqliteOptions::sync_interval`] (plus the time one disk sync takes),
    /// never corrupt the file (`PRAGMA synchronous = NORMAL`, and the writer
    /// syncs the WAL at least once per interval).
    ///
    /// Lost commits leave their positions and versions free, and new events
    /// take them: a reader that kept its position outside the store may have
    /// seen events that are gone. Choose it for data you can afford to lose
    /// the last moments of, for several times the speed of one small append
    /// at a time.
    Relaxed,
}

/// Whether the store may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Access {
    /// Reads and appends; the file is created if it does not exist.
    #[default]
    ReadWrite,
    /// Reads only: the file must exist and is never changed; appends fail
    /// with [`BackendErrorKind::ReadOnly`](annals_core::BackendErrorKind::ReadOnly).
    /// Reads, and the head watch, see what other processes commit.
    ReadOnly,
}

/// Options for opening a [`SqliteStore`].
///
/// Defaults:
///
/// | setting | default |
/// |---|---|
/// | `durability` | [`Durability::Full`] |
/// | `access` | [`Access::ReadWrite`] |
/// | `read_pool_size` | 4 connections |
/// | `queue_capacity` | 1,024 appends waiting for the writer |
/// | `max_batch_appends` | 512 appends per group commit |
/// | `max_batch_bytes` | 16 MiB of payload per group commit |
/// | `busy_timeout` | 5 s |
/// | `sync_interval` | 50 ms (relaxed durability only) |
/// | `head_poll_interval` | 50 ms |
/// | `max_size` | none (the disk is the limit) |
/// | `limits` | [`Limits::default`]: 1 MiB per payload, 10,000 events and 16 MiB per append |
///
/// ```
/// use annals_sqlite::{Durability, SqliteStore};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("bank.db");
/// let store = SqliteStore::options()
///     .path(&path)
///     .durability(Durability::Relaxed)
///     .read_pool_size(2)
///     .open()
///     .await?;
/// # drop(store);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    pub(crate) path: Option<PathBuf>,
    pub(crate) durability: Durability,
    pub(crate) access: Access,
    pub(crate) read_pool_size: usize,
    pub(crate) queue_capacity: usize,
    pub(crate) max_batch_appends: usize,
    pub(crate) max_batch_bytes: usize,
    pub(crate) busy_timeout: Duration,
    pub(crate) sync_interval: Duration,
    pub(crate) head_poll_interval: Duration,
    pub(crate) max_size: Option<u64>,
    pub(crate) limits: Limits,
    #[cfg(feature = "fault-injection")]
    pub(crate) fault_plan: Option<crate::FaultPlan>,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            path: None,
            durability: Durability::Full,
            access: Access::ReadWrite,
            read_pool_size: 4,
            queue_capacity: 1024,
            max_batch_appends: 512,
            max_batch_bytes: 16 * 1024 * 1024,
            busy_timeout: Duration::from_secs(5),
            sync_interval: Duration::from_millis(50),
            head_poll_interval: Duration::from_millis(50),
            max_size: None,
            limits: Limits::default(),
            #[cfg(feature = "fault-injection")]
            fault_plan: None,
        }
    }
}

impl SqliteOptions {
    /// The database file. Required.
    pub fn path(mut self, path: impl AsRef<Path>) -> Self {
        self.path = Some(path.as_ref().to_path_buf());
        self
    }

    /// What an acknowledged append survives.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Whether the store may write.
    pub fn access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }

    /// How many read connections run reads at once (at least 1).
    pub fn read_pool_size(mut self, size: usize) -> Self {
        self.read_pool_size = size;
        self
    }

    /// How many appends may wait for the writer before callers wait to
    /// enqueue (at least 1): the bound that keeps a flood of appends from
    /// growing memory.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity;
        self
    }

    /// The most appends one group commit takes from the queue (at least 1).
    pub fn max_batch_appends(mut self, appends: usize) -> Self {
        self.max_batch_appends = appends;
        self
    }

    /// The most payload bytes one group commit takes from the queue; an
    /// append larger than this still commits, alone (at least 1).
    pub fn max_batch_bytes(mut self, bytes: usize) -> Self {
        self.max_batch_bytes = bytes;
        self
    }

    /// How long an append waits for another process's write lock before it
    /// fails with [`BackendErrorKind::Busy`](annals_core::BackendErrorKind::Busy).
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// With [`Durability::Relaxed`], the longest an acknowledged append
    /// waits to be made durable: the writer syncs the WAL at least this
    /// often while there are unsynced commits. What a power loss can take
    /// back is the commits of this last interval, plus the time the sync
    /// itself takes, plus, when another process holds the write lock, up to
    /// [`busy_timeout`](SqliteOptions::busy_timeout) of waiting for it. A
    /// sync that fails (a full disk) is logged and tried again an interval
    /// later. More than 0; an interval too long for a clock to reach means
    /// "never"; ignored with full durability, where every commit is synced.
    pub fn sync_interval(mut self, interval: Duration) -> Self {
        self.sync_interval = interval;
        self
    }

    /// How often a watched store looks for commits made by other processes
    /// on the same file: the longest a head watcher here waits to wake
    /// after one (plus one short query). More than 0. Commits made through
    /// this store wake watchers at once.
    pub fn head_poll_interval(mut self, interval: Duration) -> Self {
        self.head_poll_interval = interval;
        self
    }

    /// The largest the database file may grow, in bytes (rounded down to
    /// whole pages); past it appends fail with
    /// [`BackendErrorKind::StorageFull`](annals_core::BackendErrorKind::StorageFull)
    /// and write nothing. `None` (the default) leaves the limit to the disk.
    pub fn max_size(mut self, bytes: Option<u64>) -> Self {
        self.max_size = bytes;
        self
    }

    /// Size limits on each append.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Makes the writer fail at the step the plan names (tests only).
    #[cfg(feature = "fault-injection")]
    pub fn fault_plan(mut self, plan: crate::FaultPlan) -> Self {
        self.fault_plan = Some(plan);
        self
    }

    /// Checks the options and opens the store.
    pub async fn open(self) -> Result<SqliteStore, OpenError> {
        self.check()?;
        SqliteStore::open_with(self, None).await
    }

    pub(crate) fn check(&self) -> Result<(), OpenError> {
        let invalid = |setting: &'static str, reason: &str| {
            Err(OpenError::InvalidOptions {
                setting,
                reason: reason.to_owned(),
            })
        };
        if self.path.is_none() {
            return invalid("path", "must be set");
        }
        // Bounds past which the pieces that hold these values would fail.
        let most = tokio::sync::Semaphore::MAX_PERMITS;
        if self.read_pool_size == 0 || self.read_pool_size > most {
            return invalid("read_pool_size", &format!("must be from 1 to {most}"));
        }
        if self.queue_capacity == 0 || self.queue_capacity > most {
            return invalid("queue_capacity", &format!("must be from 1 to {most}"));
        }
        // SQLite keeps the busy timeout in milliseconds, in a C int.
        if self.busy_timeout.as_millis() > i32::MAX as u128 {
            return invalid(
                "busy_timeout",
                "must be at most 2^31 - 1 milliseconds (24.8 days)",
            );
        }
        if self.max_batch_appends == 0 {
            return invalid("max_batch_appends", "must be at least 1");
        }
        if self.max_batch_bytes == 0 {
            return invalid("max_batch_bytes", "must be at least 1");
        }
        if self.sync_interval.is_zero() {
            return invalid("sync_interval", "must be more than 0");
        }
        if self.head_poll_interval.is_zero() {
            return invalid("head_poll_interval", "must be more than 0");
        }
        if self.max_size == Some(0) {
            return invalid("max_size", "must be more than 0 bytes");
        }
        let limits = &self.limits;
        if limits.max_events_per_append == 0 {
            return invalid("limits.max_events_per_append", "must be at least 1");
        }
        if limits.max_payload_bytes == 0 || limits.max_append_bytes == 0 {
            return invalid("limits", "byte limits must be at least 1");
        }
        Ok(())
    }
}
