//! Why a store could not be opened, and how PostgreSQL's errors map onto the
//! backend error kinds of the store contract.

use annals_core::{BackendError, BackendErrorKind};
use tokio_postgres::error::SqlState;

/// Why [`PostgresStore`](crate::PostgresStore) could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// An option is out of range or missing.
    #[error("invalid option {setting}: {reason}")]
    InvalidOptions {
        /// The option.
        setting: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The schema name breaks the rules: a lower-case identifier
    /// (`[a-z_][a-z0-9_]*`) of at most 63 bytes.
    #[error("invalid schema name {name:?}: {reason}")]
    InvalidSchemaName {
        /// The name as given.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// The server did not answer, refused the connection or the login.
    /// Nothing was created; the caller chooses whether and when to retry.
    #[error("cannot reach PostgreSQL: {source}")]
    Unavailable {
        /// What the driver reported.
        source: BackendError,
    },
    /// The schema holds tables that are not an annals store; it is left
    /// untouched.
    #[error("schema {schema:?} is not an annals store: {reason}")]
    NotAnnalsSchema {
        /// The schema.
        schema: String,
        /// What gave it away.
        reason: &'static str,
    },
    /// The schema was written by a newer annals; it is left untouched.
    #[error(
        "schema {schema:?} has annals schema version {found}, newer than the newest this \
         annals knows ({supported})"
    )]
    SchemaTooNew {
        /// The schema.
        schema: String,
        /// Its version.
        found: u32,
        /// The newest this build knows.
        supported: u32,
    },
    /// The schema is missing or older than this build, and the options say
    /// not to migrate on open: call [`PostgresOptions::migrate`](crate::PostgresOptions::migrate)
    /// (or open with migrations on).
    #[error("schema {schema:?} is at annals schema version {found}, this annals needs {current}: migrate it first")]
    NotMigrated {
        /// The schema.
        schema: String,
        /// Its version (0 when it has no annals tables).
        found: u32,
        /// The version this build needs.
        current: u32,
    },
    /// The server answered with an error while the store was being opened.
    #[error("cannot open the store in schema {schema:?}: {source}")]
    Backend {
        /// The schema.
        schema: String,
        /// The error.
        source: BackendError,
    },
}

impl OpenError {
    /// The backend error kind, when the failure came from the server.
    pub fn backend_kind(&self) -> Option<BackendErrorKind> {
        match self {
            OpenError::Unavailable { source } | OpenError::Backend { source, .. } => {
                Some(source.kind)
            }
            _ => None,
        }
    }
}

/// The backend error kind of a driver error.
pub(crate) fn kind_of(error: &tokio_postgres::Error) -> BackendErrorKind {
    if let Some(code) = error.code() {
        return kind_of_state(code);
    }
    if error.is_closed() || source_is_io(error) {
        return BackendErrorKind::Unavailable;
    }
    BackendErrorKind::Other
}

fn kind_of_state(code: &SqlState) -> BackendErrorKind {
    let code = code.code();
    match code {
        // query_canceled: statement_timeout (or a cancel request).
        "57014" => BackendErrorKind::Timeout,
        // lock_not_available (lock_timeout), serialization failure, deadlock.
        "55P03" | "40001" | "40P01" => BackendErrorKind::Busy,
        // too_many_connections, admin/crash shutdown, cannot_connect_now.
        "53300" | "57P01" | "57P02" | "57P03" => BackendErrorKind::Unavailable,
        // disk_full, insufficient_resources, out_of_memory.
        "53100" | "53000" | "53200" => BackendErrorKind::StorageFull,
        "25006" => BackendErrorKind::ReadOnly,
        "XX001" | "XX002" => BackendErrorKind::Corrupt,
        _ if code.starts_with("08") => BackendErrorKind::Unavailable,
        _ => BackendErrorKind::Other,
    }
}

fn source_is_io(error: &tokio_postgres::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// A driver error as a backend error, saying what was being done. The
/// server's message goes in the source; the statements the store sends
/// carry values only as parameters, so no payload can be in it.
pub(crate) fn backend(doing: &str, error: tokio_postgres::Error) -> BackendError {
    let kind = kind_of(&error);
    BackendError::with_source(kind, doing.to_owned(), error)
}

/// A pool error as a backend error: an exhausted pool is
/// [`BackendErrorKind::Busy`] after the bounded wait.
pub(crate) fn pool_error(doing: &str, error: deadpool_postgres::PoolError) -> BackendError {
    use deadpool_postgres::PoolError;
    match error {
        PoolError::Timeout(_) => BackendError::with_source(
            BackendErrorKind::Busy,
            format!("{doing}: no free connection in the pool within its wait"),
            error,
        ),
        PoolError::Closed => BackendError::closed(),
        PoolError::Backend(e) => backend(doing, e),
        other => BackendError::with_source(BackendErrorKind::Unavailable, doing.to_owned(), other),
    }
}

/// A stored row that does not fit: changed behind the store's back.
pub(crate) fn corrupt(what: impl Into<String>) -> BackendError {
    BackendError::new(BackendErrorKind::Corrupt, what)
}
