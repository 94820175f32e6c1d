//! Why durable handlers could not start, or stopped.

use annals_core::{BackendError, Position, ReadError};

/// Why [`Handlers`](crate::handlers::Handlers) could not start. Nothing
/// was started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandlersStartError {
    /// A handler's name breaks the naming rules: rename it.
    #[error("handler name {name:?} is invalid: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two handlers share a name: their requests would be mixed up.
    #[error("two handlers are named {name:?}")]
    DuplicateName {
        /// The name.
        name: String,
    },
    /// A handler's event pattern is invalid.
    #[error("handler {handler}: {source}")]
    InvalidPattern {
        /// The handler.
        handler: &'static str,
        /// What is wrong with the pattern.
        source: crate::bus::InvalidPattern,
    },
    /// The upcasters of a handler's event set do not form valid chains.
    #[error("the upcasters of handler {handler} are invalid: {source}")]
    InvalidUpcasters {
        /// The handler.
        handler: &'static str,
        /// What is wrong with them.
        source: annals_core::upcast::RegistryError,
    },
    /// A setting is out of range.
    #[error("invalid handler setting {setting}: {reason}")]
    InvalidOptions {
        /// The setting.
        setting: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// No handler was registered.
    #[error("no handler was registered")]
    NoHandlers,
    /// Starting needs a tokio runtime.
    #[error("starting handlers needs a tokio runtime: call it from within one")]
    NoRuntime,
}

/// Why the processor or an executor stopped. The requests stored so far
/// are kept; the next start goes on from them.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum HandlerRunError {
    /// Reading the log failed.
    #[error("reading the log failed: {0}")]
    Read(#[source] ReadError),
    /// The store failed.
    #[error("{doing} failed: {source}")]
    Backend {
        /// What was being done.
        doing: &'static str,
        /// The store's error.
        source: BackendError,
    },
    /// A handler's checkpoint is past the head, or its position holds
    /// another event: commits it had read were lost (relaxed durability
    /// and a power loss). Going on would skip the events now at those
    /// positions; reset the handler's checkpoint (`handler.<name>`) to
    /// make requests for them.
    #[error("handler {handler} read through position {position}, which the log no longer holds as it was (head {head}): commits were lost")]
    LostCommits {
        /// The handler.
        handler: &'static str,
        /// Its checkpoint.
        position: Position,
        /// The log's head.
        head: Position,
    },
}

impl HandlerRunError {
    pub(crate) fn backend(doing: &'static str, source: BackendError) -> Self {
        HandlerRunError::Backend { doing, source }
    }
}

/// Why waiting for the handlers ended early.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum HandlersWaitError {
    /// The processor or an executor failed.
    #[error(transparent)]
    Failed(HandlerRunError),
    /// They were stopped.
    #[error("the handlers were stopped")]
    Stopped,
    /// The time ran out.
    #[error("timed out")]
    TimedOut,
}
