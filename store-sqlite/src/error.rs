//! Why a store could not be opened, and how SQLite's errors map onto the
//! backend error kinds of the store contract.

use std::path::PathBuf;

use annals_core::{BackendError, BackendErrorKind};
use rusqlite::ErrorCode;

/// Why a [`SqliteStore`](crate::SqliteStore) could not be opened. In every
/// case an existing file was left exactly as it was.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// An option is out of range: fix the configuration.
    #[error("invalid option {setting}: {reason}")]
    InvalidOptions {
        /// The option's name.
        setting: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The file exists but is not an annals database (random bytes, or
    /// another application's SQLite file). It was not touched.
    #[error("{path} is not an annals database: {reason}")]
    NotAnnalsDatabase {
        /// The file.
        path: PathBuf,
        /// What gave it away.
        reason: &'static str,
    },
    /// The file was written by a newer annals: upgrade annals to open it.
    /// It was not touched.
    #[error("{path} has annals schema version {found}, newer than the newest this annals knows ({supported})")]
    SchemaTooNew {
        /// The file.
        path: PathBuf,
        /// The schema version stored in the file.
        found: u32,
        /// The newest schema version this code knows.
        supported: u32,
    },
    /// The directory that should hold the file does not exist.
    #[error("cannot open {path}: its directory does not exist")]
    MissingDirectory {
        /// The file.
        path: PathBuf,
    },
    /// [`Access::ReadOnly`](crate::Access::ReadOnly) was asked for a file
    /// that does not exist.
    #[error("cannot open {path} read-only: the file does not exist")]
    MissingFile {
        /// The file.
        path: PathBuf,
    },
    /// SQLite could not open or prepare the file; `kind` tells why
    /// (`ReadOnly`, `Corrupt`, `Io`, `Busy`...).
    #[error("cannot open {path}: {source}")]
    Backend {
        /// The file.
        path: PathBuf,
        /// What SQLite reported.
        source: BackendError,
    },
}

impl OpenError {
    /// The backend kind for errors that come from SQLite, if any.
    pub fn backend_kind(&self) -> Option<BackendErrorKind> {
        match self {
            OpenError::Backend { source, .. } => Some(source.kind),
            _ => None,
        }
    }
}

/// The backend kind of a SQLite error.
pub(crate) fn kind_of(error: &rusqlite::Error) -> BackendErrorKind {
    match error.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => BackendErrorKind::Busy,
        Some(ErrorCode::DiskFull) => BackendErrorKind::StorageFull,
        Some(ErrorCode::ReadOnly) => BackendErrorKind::ReadOnly,
        Some(ErrorCode::DatabaseCorrupt) => BackendErrorKind::Corrupt,
        Some(ErrorCode::NotADatabase) => BackendErrorKind::NotAnnalsDatabase,
        Some(ErrorCode::SystemIoFailure | ErrorCode::CannotOpen) => BackendErrorKind::Io,
        _ => BackendErrorKind::Other,
    }
}

/// Wraps a SQLite error, keeping it as the cause. `doing` says what the
/// store was doing, in a few words; SQLite's own message never holds
/// payloads because every value is a bound parameter.
pub(crate) fn backend(doing: &str, error: rusqlite::Error) -> BackendError {
    let kind = kind_of(&error);
    BackendError::with_source(kind, doing.to_owned(), error)
}

/// Whether an error means the insert hit the unique index on event ids.
pub(crate) fn is_unique_violation(error: &rusqlite::Error) -> bool {
    matches!(
        error,
        rusqlite::Error::SqliteFailure(e, _)
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
    )
}
