//! What the exactly-once read models share, whatever database holds them:
//! what a batch's handling came to, and how a stored checkpoint row is
//! read back.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::thread::Result as Caught;

use annals_core::{
    BackendError, BackendErrorKind, Checkpoint, EventId, EventType, Position, SkippedEvent,
    Timestamp,
};
use futures_util::FutureExt;

use crate::panic::panic_message;
use crate::projection::{BatchFailure, HandlerError};

/// What a batch did not get through: the handler failed on event `index`
/// (the batch was rolled back), or the database failed.
#[derive(Debug)]
pub(crate) enum BatchError {
    Handler { index: usize, error: String },
    Backend(BackendError),
}

/// How a handler's call over a whole batch ended.
pub(crate) enum Handled {
    /// Every event was handled.
    Done,
    /// The handler said which event failed, and why.
    Failed(BatchError),
    /// The handler panicked: which event it was on is not known.
    Panicked(String),
}

/// Sorts out the result of `handle_batch` over `len` events, its panic
/// caught.
pub(crate) fn handled(result: Caught<Result<(), BatchFailure>>, len: usize) -> Handled {
    match result {
        Ok(Ok(())) => Handled::Done,
        Ok(Err(failure)) => Handled::Failed(BatchError::Handler {
            index: failure.index.min(len.saturating_sub(1)),
            error: failure.error.to_string(),
        }),
        Err(panic) => Handled::Panicked(panicked(&*panic)),
    }
}

/// Why one event's handling failed, or `None` if it did not.
pub(crate) fn event_failure(result: Caught<Result<(), HandlerError>>) -> Option<String> {
    match result {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(error.to_string()),
        Err(panic) => Some(panicked(&*panic)),
    }
}

/// Runs an async handler's call, its panic caught: why it failed, if it did.
pub(crate) async fn guarded<F>(call: F) -> Result<(), String>
where
    F: std::future::Future<Output = Result<(), HandlerError>> + Send,
{
    match event_failure(AssertUnwindSafe(call).catch_unwind().await) {
        None => Ok(()),
        Some(error) => Err(error),
    }
}

/// The error of a handler that panicked.
fn panicked(panic: &(dyn Any + Send)) -> String {
    format!("the handler panicked: {}", panic_message(panic))
}

/// Sorts out the result of a projection's `create`, its panic caught.
pub(crate) fn created(result: Caught<Result<(), HandlerError>>) -> Result<(), BackendError> {
    let failure = match result {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(error)) => format!("creating the model's tables failed: {error}"),
        Err(panic) => format!(
            "creating the model's tables panicked: {}",
            panic_message(&*panic)
        ),
    };
    Err(BackendError::new(BackendErrorKind::Other, failure))
}

/// A checkpoint row that cannot be read back.
pub(crate) fn corrupt(what: &str) -> BackendError {
    BackendError::new(
        BackendErrorKind::Corrupt,
        format!("the read model's checkpoint row is unreadable: {what}"),
    )
}

/// A projection's row: its checkpoint, and the tables its `create` made.
pub(crate) struct Stored {
    pub(crate) checkpoint: Checkpoint,
    pub(crate) tables: Vec<String>,
}

/// The checkpoint stored as `version`, `position` and `event_id`.
pub(crate) fn stored_checkpoint(
    version: i64,
    position: i64,
    event_id: Option<EventId>,
) -> Result<Checkpoint, BackendError> {
    Ok(Checkpoint {
        position: Position(
            u64::try_from(position).map_err(|_| corrupt("the position is negative"))?,
        ),
        event_id,
        version: u32::try_from(version).map_err(|_| corrupt("the version is out of range"))?,
    })
}

/// A stored event id.
pub(crate) fn stored_event_id(uuid: uuid::Uuid) -> Result<EventId, BackendError> {
    EventId::from_uuid(uuid).map_err(|_| corrupt("an event id is nil"))
}

/// A skipped event as stored.
pub(crate) fn stored_skipped(
    position: i64,
    event_id: EventId,
    event_type: String,
    error: String,
    skipped_at: i64,
) -> Result<SkippedEvent, BackendError> {
    Ok(SkippedEvent {
        position: Position(u64::try_from(position).map_err(|_| corrupt("a position is negative"))?),
        event_id,
        event_type: EventType::new(event_type).map_err(|_| corrupt("an event type is invalid"))?,
        error,
        skipped_at: Timestamp::from_unix_micros(skipped_at),
    })
}

/// A position as a database stores it.
pub(crate) fn position_column(position: Position) -> Result<i64, BackendError> {
    i64::try_from(position.0)
        .map_err(|_| BackendError::new(BackendErrorKind::Other, "the position is out of range"))
}
