//! Typed domain events and how they map to stored events.
//!
//! A domain event type (usually an enum) knows, per variant, its stored name
//! and its schema version, and encodes its payload *without* the enum tag.
//! The stored `event_type` and the JSON payload are therefore independent:
//! an upcaster can reshape the JSON of `"Deposited"` version 1 without
//! knowing anything about the Rust enum.
//!
//! `#[derive(DomainEvent)]` writes the impl; a hand-written one is fine too.

use crate::error::DecodeError;
use crate::event::{Metadata, NewEvent, RecordedEvent};
use crate::id::InvalidName;
use crate::payload::{Payload, PayloadError};

pub(crate) mod tagless;

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
    fn upcasters() -> Vec<crate::upcast::Upcaster> {
        Vec::new()
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
    #[error("event type name refused: {0}")]
    InvalidEventType(InvalidName),
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
            .map_err(EncodeError::InvalidEventType)?;
        Ok(new_event.with_metadata(metadata))
    }
}

impl RecordedEvent {
    /// Decodes the stored event into a typed domain event.
    ///
    /// Every failure is an error — an unknown type, a schema version from
    /// the future or the past, a payload that does not fit — so that no
    /// event is ever dropped without anyone deciding so.
    ///
    /// ```
    /// use annals_core::testkit::bank::AccountEvent;
    /// use annals_core::{Metadata, NewEvent, Position, StreamId, Timestamp};
    /// let recorded = NewEvent::from_domain(&AccountEvent::Deposited { amount: 5 }, Metadata::default())?
    ///     .into_recorded(StreamId::new("account-1")?, 1, Position(1), Timestamp::now());
    /// assert_eq!(recorded.decode::<AccountEvent>()?, AccountEvent::Deposited { amount: 5 });
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn decode<E: DomainEvent>(&self) -> Result<E, DecodeError> {
        E::decode(self.event_type.as_str(), self.schema_version, &self.payload)
    }

    /// Like [`RecordedEvent::decode`], but an event of a type `E` does not
    /// know gives `Ok(None)`: for readers of the global log (a projection)
    /// that choose to skip other types. Every other failure, a schema
    /// version from the future included, is still an error.
    ///
    /// ```
    /// use annals_core::testkit::bank::AccountEvent;
    /// use annals_core::{NewEvent, Payload, Position, StreamId, Timestamp};
    /// let other = NewEvent::new("ParcelShipped", 1, Payload::from_json("{}")?)?
    ///     .into_recorded(StreamId::new("parcel-1")?, 1, Position(1), Timestamp::now());
    /// assert_eq!(other.decode_known::<AccountEvent>()?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn decode_known<E: DomainEvent>(&self) -> Result<Option<E>, DecodeError> {
        match self.decode() {
            Ok(event) => Ok(Some(event)),
            Err(DecodeError::UnknownEventType { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }
}
