//! The upcasting machinery: one step ([`step`]), the registry that checks
//! the steps as a whole and runs a stored event through them
//! ([`registry`]), and what goes wrong ([`error`]). Public as `crate::upcast`.
//!
//! It knows nothing of domain event types or of stores: a domain event type
//! builds its registry from its own upcasters (`crate::domain::upcasters`),
//! and the wrapping store lives above the store contract (`crate::upcasting`).

pub(crate) mod error;
pub(crate) mod registry;
pub(crate) mod step;
