//! Why a repository could not be built, an aggregate loaded, or a command
//! carried out.

use crate::append::AppendError;
use crate::decode::EventDecodeError;
use crate::domain::EncodeError;
use crate::id::{InvalidName, StreamId};
use crate::read::ReadError;
use crate::upcaster::error::RegistryError;

/// Why a repository or a unit of work refuses an aggregate type. Checked
/// when the repository is built, before the first command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AggregateError {
    /// `Aggregate::CATEGORY` is not a valid category (empty, holding a `-`
    /// or a control character...): fix the constant.
    #[error("aggregate category is invalid: {source}")]
    InvalidCategory {
        /// What is wrong with it.
        source: InvalidName,
    },
    /// The event type's upcasters do not form valid chains: fix them.
    #[error("the upcasters of the aggregate's event type are invalid: {source}")]
    InvalidUpcasters {
        /// What is wrong with them.
        source: RegistryError,
    },
}

/// Why an aggregate could not be loaded.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The aggregate id does not make a valid stream id.
    #[error(transparent)]
    InvalidId(#[from] InvalidName),
    /// The aggregate type itself is refused (its category or upcasters).
    #[error(transparent)]
    Aggregate(#[from] AggregateError),
    /// The store could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A stored event does not decode into the aggregate's event type: fix the
    /// data or add an upcaster. Nothing is skipped.
    #[error(transparent)]
    Decode(#[from] EventDecodeError),
    /// A unit of work already holds this stream as another aggregate type
    /// (two aggregate types share a category).
    #[error("stream {stream} is already loaded in this unit as another aggregate type")]
    OtherAggregateType {
        /// The stream.
        stream: StreamId,
    },
}

/// Why a command failed. Nothing was stored.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError<E> {
    /// The aggregate refused the command: tell the user.
    #[error("stream {stream}: command refused: {error}")]
    Refused {
        /// The aggregate's stream.
        stream: StreamId,
        /// The aggregate's reason.
        #[source]
        error: E,
    },
    /// The aggregate could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// An event the aggregate produced cannot be stored.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The store refused the append; a [`AppendError::Conflict`] here means
    /// the retry policy was used up.
    #[error(transparent)]
    Append(#[from] AppendError),
}

impl<E> CommandError<E> {
    /// Whether the command lost a race with another writer.
    pub fn is_conflict(&self) -> bool {
        matches!(self, CommandError::Append(e) if e.is_conflict())
    }

    /// The aggregate's reason, if it refused the command.
    pub fn refusal(&self) -> Option<&E> {
        match self {
            CommandError::Refused { error, .. } => Some(error),
            _ => None,
        }
    }
}
