//! Tools for testing event-sourced code and event stores.
//!
//! - [`AggregateTest`]: given past events, when a command, then these events
//!   or this error — unit tests for aggregates that read like the rule they check.
//! - [`conformance`]: the store contract as a suite every backend runs.
//! - [`read_log`], [`check_no_gaps`]: checks any store test needs.
//! - [`crash`]: seeded batches and the check of what survived, for tests
//!   that kill a writer mid-append.
//! - [`CountingStore`]: a wrapper that counts the reads and appends made
//!   through it.
//! - [`bank`]: a small bank account aggregate used by the docs and tests.

pub mod bank;
pub mod conformance;
mod counting;
pub mod crash;
mod given;
mod log;

pub use counting::{CountingStore, Counts};
pub use given::{AggregateTest, Then};
pub use log::{assert_no_gaps, check_no_gaps, read_log};
