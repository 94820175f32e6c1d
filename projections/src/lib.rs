//! The read side of annals: projections that follow the event log into
//! read models, exactly once into SQLite or PostgreSQL, at least once into
//! anything else, and sagas that react to it.
//!
//! A projection names the events it reads as one type (an [`EventSet`]: a
//! domain event type, or several gathered with `#[derive(EventSet)]`); the
//! runner pushes their filter into the store's read, brings old events up
//! to date with their upcasters, and hands each one to the projection in an
//! [`Envelope`] with its position, stream, version, id and metadata.
//!
//! - **Exactly once** ([`SqliteProjection`]): the read model lives in an
//!   SQLite database; each batch of events and the projection's checkpoint
//!   commit in one transaction there, so a crash neither loses nor repeats
//!   an event's effect. `PostgresProjection` (feature `postgres`) does the
//!   same in a schema of a PostgreSQL database.
//! - **At least once** ([`Projection`]): anything else (a view in memory,
//!   a cache, a search index); the checkpoint is kept in the event store
//!   after each batch, and an event's position is the key to dedupe on.
//!
//! - **Sagas** ([`saga::Saga`]): reactions that drive a process across
//!   aggregates, each committed with the saga's position in one append,
//!   with durable deadlines (see [`saga`]).
//!
//! - **Durable handlers** ([`handlers`]): work that must happen for each
//!   event (an email, a webhook), written down as a request in the store
//!   before it runs, retried with backoff, dead-lettered when it keeps
//!   failing.
//!
//! - **Event bus** ([`bus::EventBus`]): committed events handed to
//!   in-process subscribers by pattern (`account.*`), at most once across
//!   a crash; for work that may be lost.
//!
//! [`Projections`] runs several of them, each in a task of its own: it
//! catches up from its checkpoint in bounded batches, then follows live
//! commits, woken by the store's head watch (with a poll for commits a
//! watch cannot see). [`Running`] reports their status, waits for one to
//! reach a position (returning its failure rather than hanging), rebuilds
//! them, and stops them; dropping it stops them too.
//!
//! # Checkpoints, and a log that lost commits
//!
//! A checkpoint is the position a projection has read through and the id
//! of the event stored there. Checkpoints are saved per batch, never
//! between the parts of an event an upcaster split (they share a position).
//! When a projection starts again and finds its checkpoint beyond the head,
//! or another event at its position, commits it had read were lost (relaxed
//! durability and a power loss hand those positions out again): it stops
//! with [`RunError::LostCommits`] rather than skip the new events at those
//! positions. [`Running::rebuild`] recovers.
//!
//! # Versions and rebuilds
//!
//! A projection carries a `VERSION`. When the stored model was built by
//! another version, or on request, the runner rebuilds it from the start of
//! the log: an SQLite read model into a shadow database while the old model
//! keeps serving, then swapped in within one transaction, so readers never
//! see a half-built model; another projection is reset and replays.
//! Progress goes to [`Projections::on_rebuild_progress`].
//!
//! ```
//! use annals_core::testkit::bank::{Account, AccountCommand, AccountEvent};
//! use annals_core::{CommandContext, InMemoryStore, Repository};
//! use annals_projections::{Envelope, HandlerError, Projections, SqliteProjection};
//! use rusqlite::{params, Transaction};
//!
//! struct Owners;
//!
//! impl SqliteProjection for Owners {
//!     type Events = AccountEvent;
//!     const NAME: &'static str = "owners";
//!
//!     fn create(&self, db: &Transaction<'_>) -> Result<(), HandlerError> {
//!         db.execute_batch("CREATE TABLE owners (account TEXT PRIMARY KEY, owner TEXT NOT NULL)")?;
//!         Ok(())
//!     }
//!
//!     fn handle(&mut self, db: &Transaction<'_>, event: &Envelope<AccountEvent>) -> Result<(), HandlerError> {
//!         if let AccountEvent::Opened { owner } = &event.event {
//!             db.execute("INSERT INTO owners VALUES (?1, ?2)", params![event.stream_id.id(), owner])?;
//!         }
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let store = InMemoryStore::new();
//! let model = dir.path().join("owners.db");
//! let running = Projections::new(store.clone()).sqlite(&model, Owners).start()?;
//!
//! let accounts = Repository::<Account, _>::new(store)?;
//! let done = accounts
//!     .execute("42", AccountCommand::Open { owner: "ada".into() }, &CommandContext::new())
//!     .await?;
//! running.wait_for("owners", done.position()).await?;
//!
//! let db = rusqlite::Connection::open(&model)?;
//! let owner: String = db.query_row("SELECT owner FROM owners WHERE account = '42'", [], |r| r.get(0))?;
//! assert_eq!(owner, "ada");
//! running.stop().await;
//! # Ok(()) }
//! ```
//!
//! # Read models in PostgreSQL
//!
//! With the feature `postgres`, a `PostgresProjection` keeps its model in
//! a PostgreSQL database (typically the event store's), in a schema the
//! application names. Each batch is one transaction there: the handler
//! gets a `tokio_postgres::Transaction` whose `search_path` is that
//! schema, and the projection's checkpoint (and any skipped event) is
//! written in the same transaction, in the schema's `annals_projections`
//! table, so each event is applied exactly once. A checkpoint moves only
//! from where its runner last left it, so a second runner of the same
//! projection fails instead of applying a batch twice. A rebuild builds
//! into a shadow schema while the old model serves, then drops the old
//! tables and moves the new ones in, in one transaction (PostgreSQL's DDL
//! is transactional): readers never see a half-built model. Write against
//! the driver re-exported here, `annals_projections::tokio_postgres`.
//!
//! ```no_run
//! use annals_core::testkit::bank::AccountEvent;
//! use annals_core::InMemoryStore;
//! use annals_projections::tokio_postgres::Transaction;
//! use annals_projections::{async_trait, Envelope, HandlerError, PostgresProjection, Projections};
//!
//! struct Owners;
//!
//! #[async_trait]
//! impl PostgresProjection for Owners {
//!     type Events = AccountEvent;
//!     const NAME: &'static str = "owners";
//!
//!     async fn create(&self, db: &Transaction<'_>) -> Result<(), HandlerError> {
//!         db.batch_execute("CREATE TABLE owners (account TEXT PRIMARY KEY, owner TEXT NOT NULL)").await?;
//!         Ok(())
//!     }
//!
//!     async fn handle(&mut self, db: &Transaction<'_>, event: &Envelope<AccountEvent>) -> Result<(), HandlerError> {
//!         if let AccountEvent::Opened { owner } = &event.event {
//!             db.execute("INSERT INTO owners VALUES ($1, $2)", &[&event.stream_id.id(), owner]).await?;
//!         }
//!         Ok(())
//!     }
//! }
//!
//! # pub async fn run(store: InMemoryStore) -> Result<(), Box<dyn std::error::Error>> {
//! let url = "postgres://postgres@127.0.0.1:5432/app";
//! let running = Projections::new(store).postgres(url, "read_models", Owners).start()?;
//! running.wait_idle().await?; // a server that cannot be reached comes back as a typed failure
//! // SELECT owner FROM read_models.owners WHERE account = '42'
//! running.stop().await;
//! # Ok(()) }
//! # fn main() {}
//! ```

pub mod bus;
mod envelope;
mod error;
pub mod handlers;
mod panic;
#[cfg(feature = "postgres")]
mod postgres;
mod projection;
mod read_model;
mod runner;
pub mod saga;
mod sqlite;
mod status;
mod target;
pub mod testing;

pub use annals_core::EventSet;
/// Write `#[async_trait]` on an `impl Projection` (re-exported, so that an
/// application needs no dependency of its own for it).
pub use async_trait::async_trait;
pub use envelope::Envelope;
pub use error::{Found, ProjectionFailure, RunError, StartError, WaitError};
#[cfg(feature = "postgres")]
pub use projection::PostgresProjection;
pub use projection::{
    Backoff, BatchFailure, FailurePolicy, HandlerError, Projection, SqliteProjection, UnknownEvents,
};
pub use runner::{Projections, Running, SkippedError};
pub use sqlite::read_model_checkpoint;
pub use status::{ProjectionState, ProjectionStatus, RebuildProgress};
/// The PostgreSQL driver that `PostgresProjection`'s handlers are written
/// against (re-exported, so that an application uses the same version).
#[cfg(feature = "postgres")]
pub use tokio_postgres;
