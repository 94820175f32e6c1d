//! The driver's errors as the kinds of [`BackendError`] callers match on.

use annals_core::{BackendError, BackendErrorKind};

/// A failure of the read model's database, naming what was being done.
pub(crate) fn failed(doing: &'static str) -> impl Fn(tokio_postgres::Error) -> BackendError {
    move |e| BackendError::with_source(kind_of(&e), doing, e)
}

/// A failed connection attempt: without an answer from the server, the
/// server cannot be reached.
pub(crate) fn unreachable(e: tokio_postgres::Error) -> BackendError {
    let kind = match e.code() {
        Some(_) => kind_of(&e),
        None => BackendErrorKind::Unavailable,
    };
    BackendError::with_source(kind, "connecting to the read model's database", e)
}

/// A failed commit: without an answer from the server, whether the batch
/// committed is unknown (the checkpoint tells, on the next start).
pub(crate) fn uncommitted(e: tokio_postgres::Error) -> BackendError {
    let kind = match kind_of(&e) {
        BackendErrorKind::Closed | BackendErrorKind::Unavailable => {
            BackendErrorKind::OutcomeUnknown
        }
        kind => kind,
    };
    BackendError::with_source(kind, "committing a batch", e)
}

/// The kind of a driver error: by its SQLSTATE when the server answered,
/// else by whether the connection is gone.
pub(crate) fn kind_of(e: &tokio_postgres::Error) -> BackendErrorKind {
    if let Some(code) = e.code() {
        return match code.code() {
            // query_canceled: a statement_timeout or a cancel.
            "57014" => BackendErrorKind::Timeout,
            // serialization_failure, deadlock_detected, lock_not_available.
            "40001" | "40P01" | "55P03" => BackendErrorKind::Busy,
            "53100" => BackendErrorKind::StorageFull,
            "25006" => BackendErrorKind::ReadOnly,
            // admin_shutdown, crash_shutdown, cannot_connect_now,
            // too_many_connections, and every connection exception (08…).
            "57P01" | "57P02" | "57P03" | "53300" => BackendErrorKind::Unavailable,
            code if code.starts_with("08") => BackendErrorKind::Unavailable,
            "XX001" | "XX002" => BackendErrorKind::Corrupt,
            _ => BackendErrorKind::Other,
        };
    }
    if e.is_closed() {
        return BackendErrorKind::Closed;
    }
    if is_io(e) {
        BackendErrorKind::Unavailable
    } else {
        BackendErrorKind::Other
    }
}

/// Whether an I/O error is among the causes (a broken connection).
fn is_io(e: &tokio_postgres::Error) -> bool {
    let mut cause = std::error::Error::source(e);
    while let Some(error) = cause {
        if error.is::<std::io::Error>() {
            return true;
        }
        cause = error.source();
    }
    false
}
