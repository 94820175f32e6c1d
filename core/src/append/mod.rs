//! Appends: what one asks for, what it records, and the sequence every
//! backend runs the same way inside its write transaction.
//!
//! A backend does only what needs its storage: read a stream's current
//! version, insert one row, undo an append's rows, find a stored event by
//! id, read and set a tracked checkpoint ([`AppendTarget`]). Everything
//! else — the checks before the transaction, expected versions, version
//! overflow, version and position numbering, telling an idempotent retry
//! from a reused id, refusing a reaction already tracked — is written once,
//! here ([`run_append`]), so that no backend can get it subtly wrong.

mod error;
mod expected;
mod outcome;
mod prior;
mod request;
mod target;
mod tracking;

pub use error::AppendError;
pub use expected::{ActualVersion, ExpectedVersion};
pub use outcome::AppendOutcome;
pub use prior::PriorAppend;
pub use request::{AppendRequest, Limits, StreamAppend, MAX_VERSION};
pub use target::{run_append, AppendTarget, Appended, Inserted, PlannedRow};
pub use tracking::Tracking;
