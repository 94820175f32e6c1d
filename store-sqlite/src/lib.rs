//! The embedded event store of annals: one SQLite file, nothing to install.
//!
//! - **One writer, group commit, no hand-off when quiet.** One connection
//!   writes. An append that finds no commit in progress commits itself on
//!   its caller's thread; appends that arrive meanwhile queue up (a bounded
//!   queue: callers wait rather than grow memory) and the writer thread
//!   commits them all in one transaction, each append checked in its own
//!   savepoint and answered on its own. Many appends share one disk sync.
//! - **WAL mode and a read pool.** Reads run on a few read-only connections
//!   and never wait for the writer. Each read is one bounded page in its own
//!   read transaction; filters of the global log run in SQL on indexes.
//! - **Durability.** Full by default: an acknowledged append is on disk.
//!   [`Durability::Relaxed`] commits without waiting for the disk and makes
//!   the WAL durable at least every [`SqliteOptions::sync_interval`] (50 ms
//!   by default): a power loss or an operating-system crash can take back
//!   the commits of that last interval, never corrupt the file; a process
//!   crash loses nothing in either mode. The positions of commits a power
//!   loss takes back are given again to new events: a reader that keeps its
//!   position outside the store may then have seen events that are gone.
//! - **Safe files.** A file that is not an annals database, or was written by
//!   a newer annals, is refused untouched; an older one is migrated. Events
//!   are append-only: triggers refuse `UPDATE` and `DELETE` on the log.
//! - **Checkpoints.** Projections and sagas keep their place in the log in
//!   the same file ([`CheckpointStore`](annals_core::CheckpointStore)): a
//!   checkpoint and the events its follower skipped are saved in one
//!   transaction, through the same writer as appends.
//! - **Live.** After each commit the writer publishes the new head, so
//!   waiters ([`EventStore::watch_head`](annals_core::EventStore::watch_head))
//!   wake at once. Commits made by another process on the same file wake
//!   them too, within [`SqliteOptions::head_poll_interval`] (50 ms by
//!   default): while anyone watches, a thread polls the file's
//!   `data_version`.
//!
//! # How appends are committed, and why it is safe
//!
//! One connection writes, and one committer at a time holds it. An append
//! that finds no commit in progress becomes that committer: it commits on
//! its caller's own thread (inside `block_in_place` on a multi-threaded
//! tokio runtime) and answers itself, with no hand-off to another thread
//! and back. Appends that arrive meanwhile queue up; when the commit ends
//! they go, all at once, to the writer thread, which commits each group in
//! one transaction until the queue is empty. Who holds the connection
//! changes only under one lock, where it is taken and put back, so two
//! commits never overlap. A caller's turn to commit is a guard: whether the
//! commit runs, is dropped unrun (a runtime shutting down its blocking
//! pool) or unwinds, dropping the guard gives the connection back and hands
//! the queue on, and a write that never ran goes back in line, so no caller
//! can leave the writer stuck. Positions are assigned inside the write
//! transaction, so commit order is position order.
//!
//! Measured with `annals-bench` (medians of 5, 2 cores, events of about
//! 200 bytes with 110 bytes of metadata, beside raw rusqlite on the same
//! schema): commands one at a time run at 0.98× raw SQLite's rate with
//! full durability and 0.96× with relaxed durability (about 3.8× faster
//! than full); 64 concurrent commands run at 8.3× raw SQLite committing one
//! event per transaction. The relaxed sync costs about 4% of a steady
//! stream of commands.
//!
//! ```
//! use annals_core::prelude::*;
//! use annals_core::{ExpectedVersion, NewEvent, Payload, StreamId};
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
mod requests;
mod row;
mod schema;
mod store;
mod watch;
mod writer;

pub use error::OpenError;
pub use options::{Access, Durability, SqliteOptions};
pub use store::SqliteStore;
#[cfg(feature = "fault-injection")]
pub use writer::FaultPlan;

/// The rusqlite this store is built on. A read model kept in an SQLite
/// database of its own must use this very version: two crates that link
/// SQLite cannot be in one program.
pub use rusqlite;

/// The SQL of each schema version, for tests that build files of older
/// versions. Not public API.
#[doc(hidden)]
pub use schema::migrations as __schema_migrations;
