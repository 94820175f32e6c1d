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
    /// operating-system crash may lose the last commits, never corrupt the
    /// file (`PRAGMA synchronous = NORMAL`: the WAL is synced at checkpoints).
    /// Roughly twice as fast for one small append at a time.
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
    /// Reads see what other processes commit, but the head watch does not
    /// move: a reader that follows the log polls [`head`](annals_core::EventStore::head).
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
        if self.read_pool_size == 0 {
            return invalid("read_pool_size", "must be at least 1");
        }
        if self.queue_capacity == 0 {
            return invalid("queue_capacity", "must be at least 1");
        }
        if self.max_batch_appends == 0 {
            return invalid("max_batch_appends", "must be at least 1");
        }
        if self.max_batch_bytes == 0 {
            return invalid("max_batch_bytes", "must be at least 1");
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
