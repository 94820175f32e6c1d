//! Tools for testing event-sourced code and event stores.
//!
//! - [`AggregateTest`]: given past events, when a command, then these events
//!   or this error — unit tests for aggregates that read like the rule they check.
//! - [`conformance`]: the store contract as a suite every backend runs.
//! - [`bank`]: a small bank account aggregate used by the docs and tests.

pub mod bank;
pub mod conformance;
mod given;

pub use given::{AggregateTest, Then};
