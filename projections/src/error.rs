//! Errors of starting projections and of waiting for them.

use std::sync::Arc;
use std::time::Duration;

use annals_core::{BackendError, EventId, EventType, Position, ReadError};

/// Why the runner could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A projection's name breaks the naming rules: rename it.
    #[error("projection name {name:?} is invalid: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two projections share a name: their checkpoints would collide.
    #[error("two projections are named {name:?}")]
    DuplicateName {
        /// The name.
        name: String,
    },
    /// The upcasters of a projection's event set do not form valid chains.
    #[error("the upcasters of projection {projection} are invalid: {source}")]
    InvalidUpcasters {
        /// The projection.
        projection: &'static str,
        /// What is wrong with them.
        source: annals_core::upcast::RegistryError,
    },
    /// The schema named for a PostgreSQL read model is not a plain
    /// lower-case identifier (`[a-z_][a-z0-9_]*`, at most 63 bytes, not a
    /// system schema): name another.
    #[cfg(feature = "postgres")]
    #[error("projection {projection}: schema name {schema:?} is invalid: {reason}")]
    InvalidSchema {
        /// The projection.
        projection: &'static str,
        /// The schema name given.
        schema: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The connection string given for a PostgreSQL read model does not
    /// parse: fix it.
    #[cfg(feature = "postgres")]
    #[error("projection {projection}: the PostgreSQL connection string is invalid: {source}")]
    InvalidConnectionString {
        /// The projection.
        projection: &'static str,
        /// Why it does not parse (names the option, never its value).
        source: tokio_postgres::Error,
    },
    /// A setting of the runner is out of range.
    #[error("invalid runner setting {setting}: {reason}")]
    InvalidOptions {
        /// The setting.
        setting: &'static str,
        /// Why.
        reason: &'static str,
    },
}

/// Why waiting for a projection ended without it reaching the position.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// The projection failed before it got there.
    #[error(transparent)]
    Failed(ProjectionFailure),
    /// The projection was stopped before it got there.
    #[error("projection {projection} stopped at {checkpoint} before it reached {position}")]
    Stopped {
        /// The projection.
        projection: &'static str,
        /// Where it stopped.
        checkpoint: Position,
        /// Where the wait wanted it.
        position: Position,
    },
    /// The wait took longer than the caller allowed.
    #[error("projection {projection} is at {checkpoint}, not yet at {position}, after {waited:?}")]
    TimedOut {
        /// The projection.
        projection: &'static str,
        /// Where it is.
        checkpoint: Position,
        /// Where the wait wanted it.
        position: Position,
        /// How long the caller waited.
        waited: Duration,
    },
    /// No projection has this name.
    #[error("no projection is named {name:?}")]
    UnknownProjection {
        /// The name asked for.
        name: String,
    },
}

/// Why a projection could not go on (the cause of a failure that is not
/// one event's fault): the stores, or a log that lost commits.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The log no longer holds what the checkpoint says was read: commits
    /// after the checkpoint were lost (relaxed durability and a power loss
    /// hand their positions out again), and following on would skip the
    /// new events at those positions. Rebuild the projection.
    #[error("projection {projection}: its checkpoint is at position {position} (event {event_id}), but the log now holds {found}; commits it had read were lost: rebuild it", event_id = display_id(.checkpoint_event))]
    LostCommits {
        /// The projection.
        projection: &'static str,
        /// The checkpoint's position.
        position: Position,
        /// The event the checkpoint recorded at that position.
        checkpoint_event: Option<EventId>,
        /// What the log holds there now.
        found: Found,
    },
    /// Reading the log failed.
    #[error("projection {projection}: reading the log failed: {source}")]
    Read {
        /// The projection.
        projection: &'static str,
        /// Why.
        source: ReadError,
    },
    /// Reading or saving the checkpoint or the read model failed.
    #[error("projection {projection}: {doing} failed: {source}")]
    Backend {
        /// The projection.
        projection: &'static str,
        /// What the runner was doing.
        doing: &'static str,
        /// Why.
        source: BackendError,
    },
}

impl RunError {
    /// A store or read model of `projection` failed while it was `doing`.
    pub(crate) fn backend(
        projection: &'static str,
        doing: &'static str,
        source: BackendError,
    ) -> Self {
        RunError::Backend {
            projection,
            doing,
            source,
        }
    }
}

fn display_id(id: &Option<EventId>) -> String {
    id.map_or_else(|| "none".to_owned(), |id| id.to_string())
}

/// What the log holds at a checkpoint's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// The head is below the position.
    HeadBelow(Position),
    /// Another event.
    OtherEvent(EventId),
    /// No event (a gap).
    NoEvent,
}

impl std::fmt::Display for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Found::HeadBelow(head) => write!(f, "a head at {head}"),
            Found::OtherEvent(id) => write!(f, "event {id} there"),
            Found::NoEvent => f.write_str("no event there"),
        }
    }
}

/// Why a projection stopped.
///
/// Never holds an event's payload or metadata.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionFailure {
    /// An event could not be handled: the handler failed or panicked, or
    /// the event did not decode. The checkpoint is just before it.
    #[error("projection {projection} failed at position {position} (event {event_id}, type {event_type}): {error}")]
    Event {
        /// The projection.
        projection: &'static str,
        /// The position of the event.
        position: Position,
        /// The event's id.
        event_id: EventId,
        /// The event's stored type.
        event_type: EventType,
        /// What went wrong: the handler's error, a panic's message, or why
        /// the event did not decode.
        error: String,
    },
    /// The projection could not go on for a reason that is not one event's
    /// fault: a store failed, or the log lost commits it had read.
    #[error(transparent)]
    Run(Arc<RunError>),
}

impl ProjectionFailure {
    /// The position of the event that failed, for an event's failure.
    pub fn position(&self) -> Option<Position> {
        match self {
            ProjectionFailure::Event { position, .. } => Some(*position),
            ProjectionFailure::Run(_) => None,
        }
    }
}

/// A failure that is not one event's fault.
pub(crate) fn run_failure(error: RunError) -> ProjectionFailure {
    ProjectionFailure::Run(Arc::new(error))
}
