//! The store's own trouble: a closed database, a full disk, a lost
//! connection. [`BackendError`]'s [`BackendErrorKind`] tells a caller
//! whether a retry can help; the cause is kept for logs.
//!
//! The errors of each operation live beside it: [`AppendError`](crate::AppendError)
//! with appends, [`ReadError`](crate::ReadError) with reads,
//! [`DecodeError`](crate::DecodeError) with domain events.

use std::fmt;
use std::sync::Arc;

/// The store's own trouble, with the cause kept for logs.
///
/// Cloning shares the cause: when one failed commit answers every append
/// of a group, each caller gets the same cause.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct BackendError {
    /// What went wrong, for callers to match on.
    pub kind: BackendErrorKind,
    /// A short description (never payloads or metadata).
    pub message: String,
    /// The underlying error.
    #[source]
    pub source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl BackendError {
    /// A backend error with a message and no cause.
    pub fn new(kind: BackendErrorKind, message: impl Into<String>) -> Self {
        BackendError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// A backend error keeping its cause.
    pub fn with_source(
        kind: BackendErrorKind,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        BackendError {
            kind,
            message: message.into(),
            source: Some(Arc::new(source)),
        }
    }

    /// The store is closed or its writer stopped.
    pub fn closed() -> Self {
        BackendError::new(BackendErrorKind::Closed, "the store is closed")
    }

    /// The same trouble, described anew (the cause is kept).
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }
}

/// The kinds of backend trouble.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BackendErrorKind {
    /// The store was closed or its writer stopped; open it again.
    Closed,
    /// Another writer holds the database; retrying later can succeed.
    Busy,
    /// The disk or the database's size limit is full; free space, then retry.
    StorageFull,
    /// The database is read-only.
    ReadOnly,
    /// A commit failed in a way that leaves its outcome unknown; a retry with
    /// the same event ids is safe and tells which it was.
    OutcomeUnknown,
    /// The database is damaged.
    Corrupt,
    /// The file is not an annals database.
    NotAnnalsDatabase,
    /// The database was written by a newer annals.
    TooNew,
    /// The server cannot be reached.
    Unavailable,
    /// The operation took longer than allowed.
    Timeout,
    /// An I/O error.
    Io,
    /// Anything else.
    Other,
}

impl BackendErrorKind {
    /// Whether retrying the same operation later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            BackendErrorKind::Busy
                | BackendErrorKind::OutcomeUnknown
                | BackendErrorKind::Unavailable
                | BackendErrorKind::Timeout
                | BackendErrorKind::Io
        )
    }
}

impl fmt::Display for BackendErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendErrorKind::Closed => "store closed",
            BackendErrorKind::Busy => "database busy",
            BackendErrorKind::StorageFull => "storage full",
            BackendErrorKind::ReadOnly => "database is read-only",
            BackendErrorKind::OutcomeUnknown => {
                "outcome unknown (retrying with the same event ids is safe)"
            }
            BackendErrorKind::Corrupt => "database corrupt",
            BackendErrorKind::NotAnnalsDatabase => "not an annals database",
            BackendErrorKind::TooNew => "database written by a newer annals",
            BackendErrorKind::Unavailable => "database unavailable",
            BackendErrorKind::Timeout => "timed out",
            BackendErrorKind::Io => "I/O error",
            BackendErrorKind::Other => "backend error",
        })
    }
}

/// The store closed while a caller waited on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the store is closed")]
pub struct StoreClosed;
