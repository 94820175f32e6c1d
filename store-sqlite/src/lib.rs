//! The embedded event store of annals: one SQLite file, nothing to install.
//!
//! - **One writer, group commit.** A single thread owns the write
//!   connection. Appends from any number of tasks queue up (a bounded queue:
//!   callers wait rather than grow memory) and the writer commits whatever
//!   is queued in one transaction, each append checked in its own savepoint
//!   and answered on its own. Many appends share one disk sync.
//! - **WAL mode and a read pool.** Reads run on a few read-only connections
//!   and never wait for the writer. Each read is one bounded page in its own
//!   read transaction.
//! - **Durability.** Full by default: an acknowledged append is on disk.
//!   [`Durability::Relaxed`] trades the last commits before a power loss for
//!   speed; a process crash loses nothing in either mode.
//! - **Safe files.** A file that is not an annals database, or was written by
//!   a newer annals, is refused untouched; an older one is migrated. Events
//!   are append-only: triggers refuse `UPDATE` and `DELETE` on the log.
//! - **Live.** After each commit the writer publishes the new head, so
//!   waiters ([`EventStore::watch_head`](annals_core::EventStore::watch_head))
//!   wake without polling. Appends made by another process on the same file
//!   are found by reads, but wake no one here until this process commits.
//!
//! ```
//! use annals_core::{EventStore, EventStoreExt, ExpectedVersion, NewEvent, Payload, StreamId};
//! use annals_sqlite::SqliteStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = SqliteStore::open_temporary().await?;
//! let stream = StreamId::new("account-1")?;
//! let opened = NewEvent::new("Opened", 1, Payload::from_json(r#"{"owner":"ada"}"#)?)?;
//! store.append_to_stream(&stream, ExpectedVersion::NoStream, vec![opened]).await?;
//! assert_eq!(store.read_stream_to_end(&stream).await?.len(), 1);
//! # Ok(()) }
//! ```

mod blocking;
mod error;
mod options;
mod read;
mod schema;
mod store;
mod writer;

pub use error::OpenError;
pub use options::{Access, Durability, SqliteOptions};
pub use store::SqliteStore;
#[cfg(feature = "fault-injection")]
pub use writer::FaultPlan;

/// The SQL of each schema version, for tests that build files of older
/// versions. Not public API.
#[doc(hidden)]
pub use schema::migrations as __schema_migrations;
