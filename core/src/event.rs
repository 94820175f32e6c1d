//! Events on their way into the store ([`NewEvent`]) and as stored
//! ([`RecordedEvent`]), with their ids, metadata and positions.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::id::{check_tenant, EventType, InvalidName, NameProblem, StreamId};
use crate::payload::{Payload, PayloadError};

/// The unique id of an event, the key that makes appends idempotent.
///
/// [`EventId::new`] makes a UUID v7, whose time-ordered bits keep the store's
/// unique index compact; any non-nil UUID is accepted.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(Uuid);

impl EventId {
    /// A fresh, time-ordered id (UUID v7).
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        EventId(Uuid::now_v7())
    }

    /// Wraps a UUID; the nil UUID is refused.
    pub fn from_uuid(uuid: Uuid) -> Result<Self, NilEventId> {
        if uuid.is_nil() {
            Err(NilEventId)
        } else {
            Ok(EventId(uuid))
        }
    }

    /// The UUID.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

/// The nil UUID cannot be an event id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the nil UUID cannot be an event id")]
pub struct NilEventId;

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({})", self.0)
    }
}

/// A place in the global log: one total order across all streams.
///
/// Positions start at 1; [`Position::START`] (0) is "before the first
/// event", the natural place for a new reader to start from.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Position(pub u64);

impl Position {
    /// Before the first event.
    pub const START: Position = Position(0);

    /// The position right after this one.
    pub fn next(self) -> Position {
        Position(self.0.saturating_add(1))
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Position({})", self.0)
    }
}

/// When the store recorded an event, in microseconds since the Unix epoch.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        Timestamp::from(SystemTime::now())
    }

    /// From microseconds since the Unix epoch.
    pub fn from_unix_micros(micros: i64) -> Self {
        Timestamp(micros)
    }

    /// Microseconds since the Unix epoch.
    pub fn as_unix_micros(&self) -> i64 {
        self.0
    }

    /// As a `SystemTime`.
    pub fn to_system_time(&self) -> SystemTime {
        let magnitude = Duration::from_micros(self.0.unsigned_abs());
        if self.0 >= 0 {
            UNIX_EPOCH + magnitude
        } else {
            UNIX_EPOCH - magnitude
        }
    }
}

impl From<SystemTime> for Timestamp {
    fn from(time: SystemTime) -> Self {
        let micros = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        match time.duration_since(UNIX_EPOCH) {
            Ok(after) => Timestamp(micros(after)),
            Err(before) => Timestamp(-micros(before.duration())),
        }
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({}µs)", self.0)
    }
}

/// What travels with an event besides its payload.
///
/// The framework owns `correlation_id`, `causation_id` and `tenant`; anything
/// else an application wants to keep goes in `fields`. Metadata is never
/// written to logs or error messages.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// Ties together everything done for one request or process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    /// The event (or command) that caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// The tenant the event belongs to, when the application has several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Application-defined fields.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl Metadata {
    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self.correlation_id.is_none()
            && self.causation_id.is_none()
            && self.tenant.is_none()
            && self.fields.is_empty()
    }

    /// Checks the tenant name and the user fields against the payload rules.
    pub fn check(&self) -> Result<(), InvalidMetadata> {
        if let Some(tenant) = &self.tenant {
            check_tenant(tenant).map_err(|e| InvalidMetadata::Tenant { problem: e.problem })?;
        }
        if !self.fields.is_empty() {
            Payload::encode(&self.fields).map_err(|source| InvalidMetadata::Fields { source })?;
        }
        Ok(())
    }

    /// The metadata as stored: compact JSON.
    pub fn to_json(&self) -> String {
        // A map of strings, UUIDs and already-checked JSON values always serializes.
        serde_json::to_string(self).expect("metadata of checked values serializes")
    }

    /// Reads metadata as stored.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        if text.is_empty() {
            return Ok(Metadata::default());
        }
        serde_json::from_str(text)
    }
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Ids are not personal data; the tenant and user fields may be.
        f.debug_struct("Metadata")
            .field("correlation_id", &self.correlation_id)
            .field("causation_id", &self.causation_id)
            .field("tenant", &self.tenant.as_ref().map(|_| "…"))
            .field("fields", &self.fields.len())
            .finish()
    }
}

/// Metadata that cannot be stored. The message says what is wrong without
/// showing the metadata.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidMetadata {
    /// The tenant name breaks the naming rules: fix the tenant.
    #[error("metadata: invalid tenant: {problem}")]
    Tenant {
        /// What is wrong with it.
        problem: NameProblem,
    },
    /// A user field holds what the payload rules refuse.
    #[error("metadata fields: {source}")]
    Fields {
        /// What was refused.
        source: PayloadError,
    },
}

/// An event to append: its id, type, schema version, payload and metadata.
///
/// ```
/// use annals_core::{NewEvent, Payload};
/// let event = NewEvent::new("Deposited", 1, Payload::from_json(r#"{"amount":5}"#)?)?;
/// assert_eq!(event.event_type().as_str(), "Deposited");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    event_id: EventId,
    event_type: EventType,
    schema_version: u32,
    payload: Payload,
    metadata: Metadata,
}

impl NewEvent {
    /// A new event with a fresh id and empty metadata.
    pub fn new(
        event_type: impl Into<String>,
        schema_version: u32,
        payload: Payload,
    ) -> Result<Self, InvalidName> {
        Ok(NewEvent {
            event_id: EventId::new(),
            event_type: EventType::new(event_type)?,
            schema_version,
            payload,
            metadata: Metadata::default(),
        })
    }

    /// Replaces the event id (to make a retried request idempotent).
    pub fn with_id(mut self, event_id: EventId) -> Self {
        self.event_id = event_id;
        self
    }

    /// Replaces the metadata.
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// The event id.
    pub fn event_id(&self) -> EventId {
        self.event_id
    }
    /// The stored type name.
    pub fn event_type(&self) -> &EventType {
        &self.event_type
    }
    /// The payload's schema version.
    pub fn schema_version(&self) -> u32 {
        self.schema_version
    }
    /// The payload.
    pub fn payload(&self) -> &Payload {
        &self.payload
    }
    /// The metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Whether a stored event is this event: same id, type, schema version,
    /// payload and metadata. Used to tell a retry from a conflicting reuse of
    /// an id.
    pub fn same_content_as(&self, recorded: &RecordedEvent) -> bool {
        self.event_id == recorded.event_id
            && self.event_type == recorded.event_type
            && self.schema_version == recorded.schema_version
            && self.payload == recorded.payload
            && self.metadata == recorded.metadata
    }

    /// Turns the event into a recorded one; stores call this inside their
    /// write transaction.
    pub fn into_recorded(
        self,
        stream_id: StreamId,
        version: u64,
        position: Position,
        recorded_at: Timestamp,
    ) -> RecordedEvent {
        RecordedEvent::from(RecordedParts {
            position,
            stream_id,
            version,
            event_id: self.event_id,
            event_type: self.event_type,
            schema_version: self.schema_version,
            payload: self.payload,
            metadata: self.metadata,
            recorded_at,
        })
    }
}

/// An event as stored.
///
/// Read through an upcasting store, an old event arrives in its current
/// form: `event_type`, `schema_version` and `payload` are the upcast ones,
/// while [`stored_event_type`](RecordedEvent::stored_event_type) and
/// [`stored_schema_version`](RecordedEvent::stored_schema_version) still
/// say what is in the store, for debugging.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RecordedEvent {
    /// Its place in the global log.
    pub position: Position,
    /// The stream it belongs to.
    pub stream_id: StreamId,
    /// Its version in the stream: 1 for the first event, no gaps.
    pub version: u64,
    /// Its unique id.
    pub event_id: EventId,
    /// Its type name.
    pub event_type: EventType,
    /// The schema version of its payload.
    pub schema_version: u32,
    /// The JSON payload, exactly as appended (or as upcast).
    pub payload: Payload,
    /// Correlation, causation, tenant and user fields.
    pub metadata: Metadata,
    /// When the store recorded it.
    pub recorded_at: Timestamp,
    /// The stored type and schema version, when upcasting changed them;
    /// kept only then, so that reading an event costs nothing for it.
    pub(crate) upcast_from: Option<(EventType, u32)>,
}

/// The stored parts of an event, from which a backend builds a
/// [`RecordedEvent`] with `RecordedEvent::from(parts)`.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedParts {
    /// Its place in the global log.
    pub position: Position,
    /// The stream it belongs to.
    pub stream_id: StreamId,
    /// Its version in the stream.
    pub version: u64,
    /// Its unique id.
    pub event_id: EventId,
    /// Its stored type name.
    pub event_type: EventType,
    /// The stored schema version of its payload.
    pub schema_version: u32,
    /// The stored JSON payload.
    pub payload: Payload,
    /// Its metadata.
    pub metadata: Metadata,
    /// When the store recorded it.
    pub recorded_at: Timestamp,
}

impl From<RecordedParts> for RecordedEvent {
    fn from(parts: RecordedParts) -> Self {
        RecordedEvent {
            position: parts.position,
            stream_id: parts.stream_id,
            version: parts.version,
            event_id: parts.event_id,
            event_type: parts.event_type,
            schema_version: parts.schema_version,
            upcast_from: None,
            payload: parts.payload,
            metadata: parts.metadata,
            recorded_at: parts.recorded_at,
        }
    }
}

impl RecordedEvent {
    /// Whether upcasting changed this event's type or schema version.
    pub fn was_upcast(&self) -> bool {
        self.upcast_from.is_some()
    }

    /// The type name in the store, before any upcasting.
    pub fn stored_event_type(&self) -> &EventType {
        self.upcast_from
            .as_ref()
            .map_or(&self.event_type, |(event_type, _)| event_type)
    }

    /// The schema version in the store, before any upcasting.
    pub fn stored_schema_version(&self) -> u32 {
        self.upcast_from
            .as_ref()
            .map_or(self.schema_version, |(_, version)| *version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_id_fails_with_nil() {
        assert_eq!(EventId::from_uuid(Uuid::nil()), Err(NilEventId));
    }

    #[test]
    fn new_event_ids_are_time_ordered_v7() {
        let a = EventId::new();
        let b = EventId::new();
        assert_eq!(a.as_uuid().get_version_num(), 7);
        assert!(a < b);
    }

    #[test]
    fn metadata_round_trips_through_its_stored_form() -> Result<(), Box<dyn std::error::Error>> {
        let mut m = Metadata {
            correlation_id: Some(Uuid::now_v7()),
            causation_id: Some(Uuid::now_v7()),
            tenant: Some("acme".into()),
            ..Metadata::default()
        };
        m.fields.insert("ip".into(), serde_json::json!("10.0.0.1"));
        assert_eq!(Metadata::from_json(&m.to_json())?, m);
        assert_eq!(Metadata::default().to_json(), "{}");
        Ok(())
    }

    #[test]
    fn metadata_fails_with_invalid_tenant_or_fields() {
        let m = Metadata {
            tenant: Some(" acme".into()),
            ..Metadata::default()
        };
        let err = m.check().unwrap_err();
        assert_eq!(
            err,
            InvalidMetadata::Tenant {
                problem: NameProblem::SurroundingWhitespace
            }
        );
        assert!(!err.to_string().contains("acme"), "{err}");
        let mut m = Metadata::default();
        m.fields.insert("k".into(), serde_json::json!("a\0b"));
        assert_eq!(
            m.check(),
            Err(InvalidMetadata::Fields {
                source: PayloadError::NulCharacter
            })
        );
    }

    #[test]
    fn timestamp_round_trips_through_system_time() {
        let t = Timestamp::from_unix_micros(1_700_000_000_123_456);
        assert_eq!(Timestamp::from(t.to_system_time()), t);
        let before = Timestamp::from_unix_micros(-5);
        assert_eq!(Timestamp::from(before.to_system_time()), before);
    }
}
