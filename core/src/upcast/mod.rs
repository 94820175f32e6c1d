//! Schema evolution: upcasters bring old stored events up to date as they
//! are read.
//!
//! Stored events are never rewritten. Each upcaster is one step on the
//! stored form of an event — `(event_type, schema_version, JSON payload,
//! metadata)` in, one or more events out — that reshapes the JSON, renames
//! the type, or splits the event in several. An event read from the store
//! goes through steps until its `(type, version)` is current.
//!
//! The registry is checked when it is built, so a broken chain fails at
//! start-up rather than when an old event is first read: every version below
//! a type's current one must have exactly one step, every step must lead to a
//! current version, and no chain may loop.
//!
//! A domain event type declares its own upcasters (`#[event(upcasters =
//! ...)]`), and everything that decodes it applies them: the repository,
//! [`RecordedEvent::decode`](crate::RecordedEvent::decode) on an event read
//! from anywhere, and a store wrapped with
//! [`EventStoreExt::with_upcasters`](crate::EventStoreExt::with_upcasters),
//! which is needed only to read events that an upcaster splits in several.
//!
//! # Upcasters never leak stored data
//!
//! What an upcaster reports when it fails ends up in error messages and
//! logs, where payloads must never go. A step therefore fails with a
//! [`StepError`], made from a fixed message (`Err("amount is missing")`),
//! from a serde_json error (redacted: the value it tripped on is dropped),
//! or, for a message built at run time, with [`StepError::new`], whose
//! caller vouches that it holds no stored data.
//!
//! ```
//! use annals_core::upcast::{Upcaster, Upcasters};
//!
//! let upcasters = Upcasters::builder()
//!     .current("Deposited", 2)
//!     // Version 1 kept the amount in whole euros; version 2 counts cents.
//!     .upcaster(Upcaster::reshape("Deposited", 1, |payload| {
//!         let euros = payload["euros"].as_u64().ok_or("euros is not a number")?;
//!         *payload = serde_json::json!({ "cents": euros * 100 });
//!         Ok::<(), &str>(())
//!     }))
//!     .build()?;
//! # let _ = upcasters;
//! # Ok::<(), annals_core::upcast::RegistryError>(())
//! ```

mod cache;
pub(crate) mod error;
mod registry;
mod store;
pub(crate) mod upcaster;

pub(crate) use cache::registry_of;
pub use error::{RegistryError, UpcastError};
pub use registry::{Upcasters, UpcastersBuilder};
pub use store::UpcastingStore;
pub use upcaster::{StepError, UpcastEvent, Upcaster};
