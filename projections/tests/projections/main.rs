//! The projection runner, as an application meets it: catch-up and live
//! following, waits, status, failures, rebuilds, and the exactly-once
//! model checked against a clean fold of the log.

mod failures;
mod fixtures;
mod live;
mod properties;
mod rebuild;
mod sagas;
mod shapes;
