//! Decoding a stored event into its domain type, wherever it was read from.
//!
//! An event read from the global log, from a stream or from an append's
//! outcome decodes the same way: if its stored type and version are older
//! than the domain type's, the type's own upcasters (`#[event(upcasters =
//! ...)]`) bring it up to date first. Events that are already current cost
//! nothing extra: the upcasters are consulted only when the first attempt
//! finds an old version or an old name.

use crate::domain::upcasters::registry_of;
use crate::domain::{DecodeError, DomainEvent};
use crate::event::{Position, RecordedEvent};
use crate::id::StreamId;

/// A stored event that did not decode, and where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stream {stream} version {version} (position {position}): {source}")]
#[non_exhaustive]
pub struct EventDecodeError {
    /// The event's stream.
    pub stream: StreamId,
    /// Its version in the stream.
    pub version: u64,
    /// Its position in the global log.
    pub position: Position,
    /// Why it did not decode.
    pub source: DecodeError,
}

impl RecordedEvent {
    /// Decodes the event into a typed domain event, bringing an older stored
    /// version up to date with the type's own upcasters.
    ///
    /// Every failure is an error naming the event's stream, version and
    /// position — an unknown type, a schema version from the future, a
    /// payload that does not fit, an upcaster that fails — so that no event
    /// is ever dropped without anyone deciding so. An event that the
    /// upcasters split in several fails with
    /// [`DecodeError::SplitByUpcaster`]: read it through a store wrapped
    /// with [`EventStoreExt::with_upcasters`](crate::EventStoreExt::with_upcasters).
    ///
    /// ```
    /// use annals_core::testkit::bank::AccountEvent;
    /// use annals_core::{Metadata, NewEvent, Position, StreamId, Timestamp};
    /// let recorded = NewEvent::from_domain(&AccountEvent::Deposited { amount: 5 }, Metadata::default())?
    ///     .into_recorded(StreamId::new("account-1")?, 1, Position(1), Timestamp::now());
    /// assert_eq!(recorded.decode::<AccountEvent>()?, AccountEvent::Deposited { amount: 5 });
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn decode<E: DomainEvent>(&self) -> Result<E, EventDecodeError> {
        self.decode_upcast::<E>()
            .map_err(|source| self.failed(source))
    }

    /// Like [`RecordedEvent::decode`], but an event of a type `E` does not
    /// know (neither now nor under an old name its upcasters rename) gives
    /// `Ok(None)`: for readers of the global log that skip other types.
    /// Every other failure, a schema version from the future included, is
    /// still an error.
    ///
    /// ```
    /// use annals_core::testkit::bank::AccountEvent;
    /// use annals_core::{NewEvent, Payload, Position, StreamId, Timestamp};
    /// let other = NewEvent::new("ParcelShipped", 1, Payload::from_json("{}")?)?
    ///     .into_recorded(StreamId::new("parcel-1")?, 1, Position(1), Timestamp::now());
    /// assert_eq!(other.decode_known::<AccountEvent>()?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn decode_known<E: DomainEvent>(&self) -> Result<Option<E>, EventDecodeError> {
        match self.decode_upcast::<E>() {
            Ok(event) => Ok(Some(event)),
            Err(DecodeError::UnknownEventType { .. }) => Ok(None),
            Err(error) => Err(self.failed(error)),
        }
    }

    fn failed(&self, source: DecodeError) -> EventDecodeError {
        EventDecodeError {
            stream: self.stream_id.clone(),
            version: self.version,
            position: self.position,
            source,
        }
    }

    fn decode_upcast<E: DomainEvent>(&self) -> Result<E, DecodeError> {
        let first = E::decode(self.event_type.as_str(), self.schema_version, &self.payload);
        match first {
            Err(
                DecodeError::UnknownEventType { .. } | DecodeError::OutdatedSchemaVersion { .. },
            ) => {}
            decided => return decided,
        }
        // An old version, or perhaps an old name: only the type's upcasters
        // can tell.
        let upcasters = match registry_of::<E>() {
            Ok(Some(upcasters)) => upcasters,
            Ok(None) => return first,
            Err(source) => return Err(DecodeError::InvalidUpcasters { source }),
        };
        let name = self.event_type.as_str();
        if !upcasters.needs_upcast(name, self.schema_version) && !upcasters.is_old_name(name) {
            return first;
        }
        let mut parts = Vec::with_capacity(1);
        upcasters
            .upcast_into(self.clone(), &mut parts)
            .map_err(DecodeError::Upcast)?;
        match parts.as_slice() {
            [current] => E::decode(
                current.event_type.as_str(),
                current.schema_version,
                &current.payload,
            ),
            _ => Err(DecodeError::SplitByUpcaster {
                event_type: name.to_owned(),
                version: self.schema_version,
                parts: parts.len(),
            }),
        }
    }
}
