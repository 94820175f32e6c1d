//! Typed domain events and how they map to stored events.
//!
//! A domain event type (usually an enum) knows, per variant, its stored name
//! and its schema version, and encodes its payload *without* the enum tag.
//! The stored `event_type` and the JSON payload are therefore independent:
//! an upcaster can reshape the JSON of `"Deposited"` version 1 without
//! knowing anything about the Rust enum.
//!
//! `#[derive(DomainEvent)]` writes the impl; a hand-written one is fine too.

use crate::event::{Metadata, NewEvent};
use crate::id::InvalidName;
use crate::payload::{Payload, PayloadError};
use crate::upcaster::error::{RegistryError, UpcastError};
use crate::upcaster::step::Upcaster;

pub(crate) mod tagless;
pub(crate) mod upcasters;

/// A typed domain event.
///
/// ```
/// use annals_core::{DomainEvent, Payload};
///
/// #[derive(Debug, PartialEq, DomainEvent, serde::Serialize, serde::Deserialize)]
/// enum AccountEvent {
///     Opened { owner: String },
///     #[event(name = "MoneyDeposited", version = 2)]
///     Deposited { amount: u64 },
/// }
///
/// let event = AccountEvent::Deposited { amount: 5 };
/// assert_eq!(event.event_type(), "MoneyDeposited");
/// assert_eq!(event.schema_version(), 2);
/// let payload = event.encode()?;
/// assert_eq!(payload.as_str(), r#"{"amount":5}"#); // no enum tag
/// let back = AccountEvent::decode("MoneyDeposited", 2, &payload)?;
/// assert_eq!(back, event);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait DomainEvent: Sized + Send + Sync + 'static {
    /// The stored name of this event's type, such as `"Deposited"`.
    fn event_type(&self) -> &'static str;

    /// The schema version this code writes for this event's type.
    fn schema_version(&self) -> u32;

    /// The payload, without any enum tag.
    fn encode(&self) -> Result<Payload, PayloadError>;

    /// Decodes a stored event of the current schema version.
    ///
    /// Fails with [`DecodeError::UnknownEventType`] for a name the type does
    /// not know, [`DecodeError::FutureSchemaVersion`] or
    /// [`DecodeError::OutdatedSchemaVersion`] for another version, and
    /// [`DecodeError::InvalidPayload`] when the JSON does not fit.
    fn decode(
        event_type: &str,
        schema_version: u32,
        payload: &Payload,
    ) -> Result<Self, DecodeError>;

    /// Every stored name this type can decode, with its current schema version.
    fn known_types() -> &'static [(&'static str, u32)];

    /// The upcasters that bring older stored versions of these types up to
    /// date, kept next to the type so the two are read together. With the
    /// derive: `#[event(upcasters = path::to::fn)]` on the enum.
    fn upcasters() -> Vec<Upcaster> {
        Vec::new()
    }
}

/// Why a stored event could not become a typed domain event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The code knows no event of this type: an event written by newer code,
    /// or a type that was removed without an upcaster.
    #[error("unknown event type {event_type:?}")]
    UnknownEventType {
        /// The stored type name.
        event_type: String,
    },
    /// The stored schema version is newer than the code knows: deploy the
    /// newer code; never drop the event.
    #[error("event type {event_type:?} has schema version {found}, newer than the newest known ({newest})")]
    FutureSchemaVersion {
        /// The stored type name.
        event_type: String,
        /// The stored schema version.
        found: u32,
        /// The newest version the code knows.
        newest: u32,
    },
    /// The stored schema version is older than the code's and no upcaster
    /// brings it up to date: declare one with `#[event(upcasters = ...)]`.
    #[error("event type {event_type:?} has schema version {found}, older than the current ({current}), and no upcaster brings it up to date")]
    OutdatedSchemaVersion {
        /// The stored type name.
        event_type: String,
        /// The stored schema version.
        found: u32,
        /// The version the code reads.
        current: u32,
    },
    /// The payload does not fit the type (the message names the mismatch,
    /// never the stored value).
    #[error(
        "payload of {event_type:?} (schema version {schema_version}) does not decode: {reason}"
    )]
    InvalidPayload {
        /// The stored type name.
        event_type: String,
        /// The stored schema version.
        schema_version: u32,
        /// What did not fit.
        reason: String,
    },
    /// The type's upcasters failed on the stored event: fix the upcaster or
    /// the data.
    #[error(transparent)]
    Upcast(UpcastError),
    /// The type's upcasters split the stored event into several events,
    /// which one decode cannot return: read it through a store wrapped with
    /// `EventStoreExt::with_upcasters`, which delivers every part.
    #[error("event type {event_type:?} version {version} splits into {parts} events when upcast; read it through a store wrapped with `with_upcasters` to get every part")]
    SplitByUpcaster {
        /// The stored type name.
        event_type: String,
        /// The stored schema version.
        version: u32,
        /// How many events it becomes.
        parts: usize,
    },
    /// The type's upcasters do not form a valid chain: fix them.
    #[error("the upcasters of the event type are invalid: {source}")]
    InvalidUpcasters {
        /// What is wrong with them.
        source: RegistryError,
    },
}

impl DecodeError {
    /// Builds [`DecodeError::InvalidPayload`] from a serde_json error, without
    /// quoting the payload.
    pub fn invalid_payload(
        event_type: &str,
        schema_version: u32,
        error: &serde_json::Error,
    ) -> Self {
        DecodeError::InvalidPayload {
            event_type: event_type.to_owned(),
            schema_version,
            reason: crate::payload::redacted_message(error),
        }
    }
}

/// Checks that a stored schema version is the current one.
pub fn check_schema_version(event_type: &str, found: u32, current: u32) -> Result<(), DecodeError> {
    use std::cmp::Ordering;
    match found.cmp(&current) {
        Ordering::Equal => Ok(()),
        Ordering::Greater => Err(DecodeError::FutureSchemaVersion {
            event_type: event_type.to_owned(),
            found,
            newest: current,
        }),
        Ordering::Less => Err(DecodeError::OutdatedSchemaVersion {
            event_type: event_type.to_owned(),
            found,
            current,
        }),
    }
}

/// Decodes a payload into `T`, naming the event in the error.
pub fn decode_payload<T: serde::de::DeserializeOwned>(
    event_type: &str,
    schema_version: u32,
    payload: &Payload,
) -> Result<T, DecodeError> {
    serde_json::from_str(payload.as_str())
        .map_err(|e| DecodeError::invalid_payload(event_type, schema_version, &e))
}

/// The error for a stored name the event type does not know.
pub fn unknown_event_type(event_type: &str) -> DecodeError {
    DecodeError::UnknownEventType {
        event_type: event_type.to_owned(),
    }
}

/// Why a typed event could not become a [`NewEvent`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The payload holds what JSON cannot keep (a NaN, a NUL, deep nesting).
    #[error("event {event_type:?} cannot be encoded: {source}")]
    Payload {
        /// The stored name of the event.
        event_type: &'static str,
        /// What was refused.
        source: PayloadError,
    },
    /// A hand-written [`DomainEvent`] impl returned an invalid stored name.
    #[error("event type name refused: {source}")]
    InvalidEventType {
        /// What is wrong with the name.
        source: InvalidName,
    },
}

impl NewEvent {
    /// Encodes a typed event, with a fresh id and the given metadata.
    ///
    /// ```
    /// use annals_core::testkit::bank::AccountEvent;
    /// use annals_core::{Metadata, NewEvent};
    /// let event = NewEvent::from_domain(&AccountEvent::Deposited { amount: 5 }, Metadata::default())?;
    /// assert_eq!(event.event_type().as_str(), "Deposited");
    /// assert_eq!(event.payload().as_str(), r#"{"amount":5}"#);
    /// # Ok::<(), annals_core::EncodeError>(())
    /// ```
    pub fn from_domain<E: DomainEvent>(event: &E, metadata: Metadata) -> Result<Self, EncodeError> {
        let event_type = event.event_type();
        let payload = event
            .encode()
            .map_err(|source| EncodeError::Payload { event_type, source })?;
        let new_event = NewEvent::new(event_type, event.schema_version(), payload)
            .map_err(|source| EncodeError::InvalidEventType { source })?;
        Ok(new_event.with_metadata(metadata))
    }
}
