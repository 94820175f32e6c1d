//! Running blocking SQLite calls from async code.

use std::cell::Cell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use annals_core::{BackendError, BackendErrorKind};

thread_local! {
    /// Whether tokio refused `block_in_place` on this thread before (it
    /// does inside a `LocalSet`, where no flavour check can tell it will).
    static NO_BLOCK_IN_PLACE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `work`, which blocks on SQLite, without stalling the async runtime:
///
/// - on a multi-threaded tokio runtime, right here inside `block_in_place`,
///   which first moves this worker's other tasks to another thread (no
///   hand-off to a sleeping thread and back, which costs more than a short
///   read itself); where tokio refuses that (inside a `LocalSet`), on its
///   blocking pool, as it does from then on on that thread;
/// - on a current-thread tokio runtime, on its blocking pool;
/// - outside tokio (another executor), right here: there is no pool to
///   hand it to, and blocking briefly beats failing.
///
/// On the blocking pool `work` may not run at all when the runtime shuts
/// down: callers that must not lose it give it a guard that acts on drop.
pub(crate) async fn run<T, F>(work: F) -> Result<T, BackendError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let flavor = tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor());
    let in_place = matches!(flavor, Ok(tokio::runtime::RuntimeFlavor::MultiThread))
        && !NO_BLOCK_IN_PLACE.with(Cell::get);
    if in_place {
        let mut pending = Some(work);
        let ran = catch_unwind(AssertUnwindSafe(|| {
            tokio::task::block_in_place(|| pending.take().map(|work| work()))
        }));
        match ran {
            Ok(Some(done)) => return Ok(done),
            Ok(None) => {}
            // The work itself panicked: pass it on.
            Err(panic) if pending.is_none() => resume_unwind(panic),
            // tokio refused before running it.
            Err(_) => NO_BLOCK_IN_PLACE.with(|refused| refused.set(true)),
        }
        return match pending.take() {
            Some(work) => on_pool(work).await,
            None => Err(BackendError::new(
                BackendErrorKind::Other,
                "a blocking call ran without an answer",
            )),
        };
    }
    match flavor {
        Ok(_) => on_pool(work).await,
        Err(_) => Ok(work()),
    }
}

async fn on_pool<T, F>(work: F) -> Result<T, BackendError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        BackendError::new(
            BackendErrorKind::Other,
            format!("a blocking task failed: {e}"),
        )
    })
}
