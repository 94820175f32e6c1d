//! One error type for applications that want a single `?`.

use annals_core::upcast::RegistryError;
use annals_core::{
    AggregateError, AppendError, CommandError, EncodeError, EventDecodeError, InvalidName,
    LoadError, PayloadError, ReadError, SnapshotError, StoreClosed, StreamId,
};

/// Any error annals returns, for applications that want one `?`.
///
/// Each variant wraps the error of one operation family; match on it when
/// the caller acts differently per failure. A failed command keeps its
/// shape: a conflict stays an [`AppendError::Conflict`] under
/// [`Error::Append`], and only the aggregate's own refusal is boxed, under
/// [`Error::Refused`] with the stream it came from.
///
/// ```
/// use annals_core::testkit::bank::{Account, AccountCommand, BankError};
/// use annals::{CommandContext, Error, InMemoryStore, Repository};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Error> {
/// let accounts = Repository::<Account, _>::new(InMemoryStore::new())?;
/// let withdraw = AccountCommand::Withdraw { amount: 5 };
/// let err: Error = accounts.execute("1", withdraw, &CommandContext::new()).await.unwrap_err().into();
/// assert!(matches!(err.refusal::<BankError>(), Some(BankError::NotOpen)));
/// assert!(!err.is_conflict());
/// # Ok(()) }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An append was refused; [`Error::is_conflict`] tells a conflict.
    #[error(transparent)]
    Append(#[from] AppendError),
    /// An aggregate refused a command: tell the user.
    #[error("stream {stream}: command refused: {source}")]
    Refused {
        /// The aggregate's stream.
        stream: StreamId,
        /// The aggregate's own error; [`Error::refusal`] gets it back.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An aggregate could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// An aggregate type is refused (its category or its upcasters).
    #[error(transparent)]
    Aggregate(#[from] AggregateError),
    /// A typed event could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// A read failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A stored event did not decode.
    #[error(transparent)]
    Decode(#[from] EventDecodeError),
    /// A payload was refused.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// An upcaster registry was refused at start-up.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A snapshot could not be saved or loaded.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// A stream id, event type or tenant was refused.
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    /// The store closed while a caller waited on it.
    #[error(transparent)]
    Closed(#[from] StoreClosed),
    /// An SQLite store could not be opened.
    #[cfg(feature = "sqlite")]
    #[error(transparent)]
    Sqlite(#[from] annals_sqlite::OpenError),
    /// A PostgreSQL store could not be opened.
    #[cfg(feature = "postgres")]
    #[error(transparent)]
    Postgres(#[from] annals_postgres::OpenError),
    /// Projections could not start.
    #[cfg(feature = "projections")]
    #[error(transparent)]
    ProjectionsStart(#[from] annals_projections::StartError),
    /// A wait for a projection ended without it reaching the position.
    #[cfg(feature = "projections")]
    #[error(transparent)]
    ProjectionWait(#[from] annals_projections::WaitError),
    /// A store's own trouble (a checkpoint that could not be saved, say).
    #[error(transparent)]
    Backend(#[from] annals_core::BackendError),
}

impl Error {
    /// Whether a command or an append lost a race with another writer.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Append(e) if e.is_conflict())
    }

    /// The aggregate's own refusal, if this is one of type `E`: what to
    /// show a user (this error's own `Display` is for logs, and names the
    /// stream).
    pub fn refusal<E: std::error::Error + 'static>(&self) -> Option<&E> {
        match self {
            Error::Refused { source, .. } => source.downcast_ref::<E>(),
            _ => None,
        }
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<CommandError<E>> for Error {
    fn from(error: CommandError<E>) -> Self {
        match error {
            CommandError::Refused { stream, error } => Error::Refused {
                stream,
                source: Box::new(error),
            },
            CommandError::Load(e) => Error::Load(e),
            CommandError::Encode(e) => Error::Encode(e),
            CommandError::Append(e) => Error::Append(e),
            other => Error::Load(LoadError::Read(ReadError::Backend(
                annals_core::BackendError::new(
                    annals_core::BackendErrorKind::Other,
                    format!("unknown command failure: {other}"),
                ),
            ))),
        }
    }
}
