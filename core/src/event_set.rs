//! Event sets: the events a reader of the global log wants, as one type.
//!
//! A read model often follows several aggregates (orders and stock, say),
//! whose events are separate enums. An event set is one Rust type that
//! names them all; from it a reader gets the filter to push into the
//! store's read and a decoder that brings every event up to date with its
//! type's upcasters.
//!
//! Every [`DomainEvent`] is an event set on its own: it wants its stored
//! names (and the old names its upcasters read), in any stream. Several
//! event types make one set with `#[derive(EventSet)]` on an enum of
//! newtype variants, each naming the category its events live in:
//!
//! ```
//! use annals_core::testkit::bank::AccountEvent;
//! use annals_core::{EventSet, Position, ReadAll};
//!
//! #[derive(Debug, EventSet)]
//! enum LedgerEvent {
//!     #[events(category = "account")]
//!     Account(AccountEvent),
//! }
//!
//! let read = LedgerEvent::narrow(ReadAll::after(Position::START));
//! assert_eq!(read.filter().categories(), ["account"]);
//! ```
//!
//! # Which events a set reads
//!
//! When every variant names a category, the set reads every event of those
//! categories (on an index, on the stores that have one) and decodes each
//! with the variant of its category. An event there of a type the variant
//! does not know (written by newer code, or a type since removed) decodes
//! as `None`, and the reader decides: skip it, or stop. When a variant
//! names no category, its events may be in any stream, and the set reads by
//! event type instead: the stored names of every variant's type.

use crate::decode::EventDecodeError;
use crate::domain::DomainEvent;
use crate::event::RecordedEvent;
use crate::read::ReadAll;
use crate::upcaster::registry::UpcastersBuilder;

/// The events a reader of the global log wants, decoded into one type.
///
/// Implemented by every [`DomainEvent`], and by `#[derive(EventSet)]` for an
/// enum that gathers several of them.
pub trait EventSet: Sized + Send + Sync + 'static {
    /// Narrows a read of the global log to this set's events.
    fn narrow(read: ReadAll) -> ReadAll;

    /// Declares every event type of the set, with its upcasters, so that a
    /// reader can bring old events up to date (splits included) before it
    /// decodes them.
    fn upcasters(builder: UpcastersBuilder) -> UpcastersBuilder;

    /// Decodes a current (already upcast) event; `Ok(None)` when the set
    /// has no type for it.
    fn decode(event: &RecordedEvent) -> Result<Option<Self>, EventDecodeError>;
}

impl<E: DomainEvent> EventSet for E {
    fn narrow(read: ReadAll) -> ReadAll {
        read.events_of::<E>()
    }

    fn upcasters(builder: UpcastersBuilder) -> UpcastersBuilder {
        builder.events::<E>()
    }

    fn decode(event: &RecordedEvent) -> Result<Option<Self>, EventDecodeError> {
        event.decode_known::<E>()
    }
}
