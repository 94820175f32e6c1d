//! # annals
//!
//! Event sourcing for Rust. Aggregates turn commands into versioned domain
//! events; the events go into an append-only store with optimistic
//! concurrency; every state can be rebuilt by replaying them.
//!
//! ```
//! use annals::{Aggregate, CommandContext, DomainEvent, InMemoryStore, Repository};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
//! enum CounterEvent {
//!     Incremented { by: u32 },
//! }
//!
//! #[derive(Default, Clone)]
//! struct Counter {
//!     value: u32,
//! }
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("the counter would overflow")]
//! struct Overflow;
//!
//! impl Aggregate for Counter {
//!     const CATEGORY: &'static str = "counter";
//!     type Event = CounterEvent;
//!     type Command = u32;
//!     type Error = Overflow;
//!
//!     fn apply(&mut self, CounterEvent::Incremented { by }: &CounterEvent) {
//!         self.value += by;
//!     }
//!
//!     fn handle(&self, by: u32) -> Result<Vec<CounterEvent>, Overflow> {
//!         self.value.checked_add(by).ok_or(Overflow)?;
//!         Ok(vec![CounterEvent::Incremented { by }])
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), annals::Error> {
//! let counters = Repository::<Counter, _>::new(InMemoryStore::new())?;
//! counters.execute("clicks", 2, &CommandContext::new()).await?;
//! counters.execute("clicks", 3, &CommandContext::new()).await?;
//! assert_eq!(counters.load("clicks").await?.state.value, 5);
//! # Ok(()) }
//! ```
//!
//! ## Where things are
//!
//! | path | what an application finds there |
//! |---|---|
//! | `annals::*` | what an application names: aggregates, the repository and units of work, events and ids, reads, the store traits, the in-memory store, the errors |
//! | [`annals::sqlite`](crate::sqlite) | the embedded SQLite store (feature `sqlite`, on by default), its options, and the `rusqlite` it is built on |
//! | `annals::postgres` | the scale-out PostgreSQL store (feature `postgres`), its options, and the `tokio_postgres` it is built on |
//! | [`annals::projections`](crate::projections) | the read side: projections, SQLite and PostgreSQL read models, the runner, rebuilds, sagas (feature `projections`, on by default) |
//! | [`annals::upcast`](crate::upcast) | upcasters, for reading old event schemas as new ones |
//! | [`annals::store`](crate::store) | what a store backend needs: the append sequence every backend runs, stored parts |
//! | [`annals::codec`](crate::codec) | helpers for a hand-written `DomainEvent` impl |
//! | [`annals::prelude`](crate::prelude) | the traits to have in scope |
//! | `annals::testkit` | aggregate tests, the store conformance suite (feature `testkit`) |
//!
//! The crates behind it: `annals-core` (everything but the stores),
//! `annals-derive` (`#[derive(DomainEvent)]`), `annals-sqlite`,
//! `annals-postgres`, `annals-projections`. Depend on
//! this one alone.

mod error;

pub use annals_core::{
    ActualVersion, Aggregate, AggregateError, AppendError, AppendOutcome, AppendRequest,
    AttemptError, BackendError, BackendErrorKind, CacheSize, Checkpoint, CheckpointStore,
    CommandContext, CommandError, DecodeError, Direction, DomainEvent, Done, EncodeError,
    EventDecodeError, EventId, EventSet, EventStore, EventStoreExt, EventType, Executed,
    ExpectedVersion, HandlerRequest, HandlerStore, HeadWatch, InMemoryStore, InvalidMetadata,
    InvalidName, Limits, LoadError, Loaded, LogFilter, Metadata, NameProblem, NewEvent, NilEventId,
    Page, Pages, Payload, PayloadError, Position, ReadAll, ReadError, ReadStream, RecordedEvent,
    Repository, RequestCounts, RequestFilter, RequestId, RequestStatus, RetryPolicy, SkippedEvent,
    SnapshotError, SnapshotPolicy, SnapshotStore, StoreClosed, StreamId, Timestamp, Tracking, Unit,
    UnitOfWork, MAX_DEPTH, MAX_NAME_LEN,
};
pub use error::Error;

/// The embedded store: one SQLite file, nothing to install.
///
/// ```
/// use annals::sqlite::{Durability, SqliteStore};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), annals::Error> {
/// let store = SqliteStore::options().durability(Durability::Full);
/// # let _ = store;
/// # Ok(()) }
/// ```
#[cfg(feature = "sqlite")]
pub mod sqlite {
    pub use annals_sqlite::{rusqlite, Access, Durability, OpenError, SqliteOptions, SqliteStore};
}

/// The scale-out store: one PostgreSQL database shared by many processes,
/// with every guarantee of the embedded one (feature `postgres`).
///
/// Switching from SQLite is one constructor:
///
/// ```no_run
/// use annals::postgres::PostgresStore;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), annals::Error> {
/// let store = PostgresStore::options()
///     .url("postgres://app@db.internal/bank")
///     .schema("bank_events")
///     .connect()
///     .await?;
/// # let _ = store;
/// # Ok(()) }
/// ```
#[cfg(feature = "postgres")]
pub mod postgres {
    pub use annals_postgres::{
        tokio_postgres, OpenError, PostgresOptions, PostgresStore, DEFAULT_SCHEMA,
    };
}

/// The read side: projections that follow the log into read models,
/// exactly once into SQLite, at least once into anything else; sagas that
/// react to it.
///
/// See the [`annals_projections`] crate docs for the whole story.
#[cfg(feature = "projections")]
pub mod projections {
    pub use annals_projections::*;
}

/// Upcasters: old stored event schemas read as the current ones.
pub mod upcast {
    pub use annals_core::upcast::*;
}

/// What a store backend needs beyond what an application names.
pub mod store {
    pub use annals_core::store::*;
}

/// Helpers for a hand-written [`DomainEvent`] impl.
pub mod codec {
    pub use annals_core::codec::*;
}

/// The traits to have in scope: `use annals::prelude::*;`.
pub mod prelude {
    pub use annals_core::prelude::*;
}

/// Tools for testing aggregates and stores (enable the `testkit` feature).
#[cfg(feature = "testkit")]
pub use annals_core::testkit;

/// Re-exports for code generated by `#[derive(DomainEvent)]`. Not public API.
#[doc(hidden)]
pub use annals_core::__private;
