//! The scale-out event store of annals: one PostgreSQL database shared by
//! many processes on many machines.
//!
//! Switching an application from SQLite is one constructor:
//! `SqliteStore::open(path)` becomes [`PostgresStore::connect`]`(url)`;
//! the store keeps every guarantee of the store contract and offers the
//! same snapshots, checkpoints and durable handler requests.
//!
//! # No skipped events, and what it costs
//!
//! PostgreSQL's sequences hand out numbers at insert and transactions
//! commit in any order: a reader that goes on from the last position it saw
//! could move past an event that commits later with a lower number, and
//! never see it. This store assigns positions under a lock instead: every
//! append first locks the single row of `log_head` (`FOR UPDATE`), holds
//! it until it commits, reads the head there, numbers its events from it
//! and writes the new head. Commits that write events are therefore
//! serialised, in every process, and commit order is position order: an
//! event is visible only after every event below it is. Positions have no
//! gaps, as on SQLite.
//!
//! The cost is that appends to the same database take turns, one
//! transaction at a time. Each process commits the appends that queue up
//! while it waits in one transaction (group commit: every append checked
//! on its own, answered on its own), usually as one statement, so the turn
//! is shared by many appends and costs one round trip and the commit's
//! flush (see the `writer` module for the three ways a group goes).
//!
//! Measured with `annals-bench --store postgres` (medians of 5, 2 cores
//! shared with the server, events of about 200 bytes with 110 bytes of
//! metadata, beside raw tokio-postgres on a table of the same shape):
//! commands one at a time run at 0.87× an application that reads the
//! stream's version and inserts one event per transaction; 64 concurrent
//! commands at 2.0× the same from 64 connections; loading a stream at
//! 0.96×, scanning the log at 1.03× and rebuilding a read model at 0.95×
//! raw reads.
//!
//! # Live
//!
//! Commits notify a channel of the store's schema with the new head (a
//! position, never an event). While commits follow each other closely, a
//! process sends at most one notification every 5 ms, and the last
//! commit's head always goes out within 5 ms: a notification costs the
//! commit a database-wide lock. A watched store listens on one connection
//! of its own and re-reads the head after reconnecting and every
//! [`PostgresOptions::head_poll_interval`], so a lost connection delays
//! waiters but never loses a commit for them. Waiters in the process that
//! committed are woken at once.
//!
//! # Faults
//!
//! - A server that cannot be reached at open is [`OpenError::Unavailable`];
//!   the caller chooses a retry policy.
//! - A connection lost while an append commits is
//!   [`BackendErrorKind::OutcomeUnknown`](annals_core::BackendErrorKind::OutcomeUnknown):
//!   retrying with the same event ids is safe, and returns the original
//!   result if the append did commit.
//! - A statement that runs past [`PostgresOptions::statement_timeout`] is
//!   [`BackendErrorKind::Timeout`](annals_core::BackendErrorKind::Timeout).
//! - When every pooled connection is busy, a call waits
//!   [`PostgresOptions::pool_wait`] and then fails with
//!   [`BackendErrorKind::Busy`](annals_core::BackendErrorKind::Busy).

mod error;
mod group;
mod name;
mod options;
mod read;
mod requests;
mod row;
mod schema;
mod sql;
mod store;
mod target;
#[cfg(feature = "testkit")]
pub mod testing;
mod watch;
mod writer;

pub use error::OpenError;
pub use options::{PostgresOptions, DEFAULT_SCHEMA};
pub use schema::CURRENT_VERSION as SCHEMA_VERSION;
pub use store::PostgresStore;

/// The tokio-postgres this store is built on, for read models that keep
/// their tables in the same database.
pub use tokio_postgres;
