//! One error type for applications that want a single `?`.

use annals_core::{
    AppendError, DecodeError, EncodeError, InvalidName, LoadError, PayloadError, ReadError,
    RegistryError, SnapshotError,
};
use annals_sqlite::OpenError;

/// Any error annals returns, for applications that want one `?`.
///
/// Each variant wraps the error of one operation family; match on it when
/// the caller acts differently per failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An append was refused.
    #[error(transparent)]
    Append(#[from] AppendError),
    /// A store could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// A read failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A stored event did not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A typed event could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// An aggregate could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
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
    /// A command failed: refused by the aggregate, or by the store.
    #[error(transparent)]
    Command(Box<dyn std::error::Error + Send + Sync>),
}

impl<E: std::error::Error + Send + Sync + 'static> From<annals_core::CommandError<E>> for Error {
    fn from(error: annals_core::CommandError<E>) -> Self {
        Error::Command(Box::new(error))
    }
}
