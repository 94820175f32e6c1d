//! Running blocking SQLite calls from async code.

use annals_core::{BackendError, BackendErrorKind};

/// Runs `work`, which blocks on SQLite, without stalling the async runtime:
///
/// - on a multi-threaded tokio runtime, right here inside `block_in_place`,
///   which first moves this worker's other tasks to another thread (no
///   hand-off to a sleeping thread and back, which costs more than a short
///   read itself);
/// - on a current-thread tokio runtime, on its blocking pool;
/// - outside tokio (another executor), right here: there is no pool to
///   hand it to, and blocking briefly beats failing.
pub(crate) async fn run<T, F>(work: F) -> Result<T, BackendError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => Ok(tokio::task::block_in_place(work)),
        Ok(_) => tokio::task::spawn_blocking(work).await.map_err(|e| {
            BackendError::new(
                BackendErrorKind::Other,
                format!("a blocking task failed: {e}"),
            )
        }),
        Err(_) => Ok(work()),
    }
}
