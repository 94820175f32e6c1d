//! What a projection's handler receives: a decoded event and where it is.

use annals_core::{EventId, EventType, Metadata, Position, StreamId, Timestamp};

/// A decoded event with everything the store knows about it.
///
/// Events that an upcaster split from one stored event share its position
/// and its stream version; the first part keeps the stored event's id, and
/// each other part has an id derived from it (the same on every read).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Envelope<E> {
    /// The event, brought up to date by its type's upcasters.
    pub event: E,
    /// Where it is in the global log: the key to dedupe on for a
    /// projection that is at least once.
    pub position: Position,
    /// Its stream.
    pub stream_id: StreamId,
    /// Its version in the stream.
    pub version: u64,
    /// Its id.
    pub event_id: EventId,
    /// Its type, as decoded (after any upcasting).
    pub event_type: EventType,
    /// Its metadata: correlation and causation ids, tenant, user fields.
    pub metadata: Metadata,
    /// When the store recorded it.
    pub recorded_at: Timestamp,
}
