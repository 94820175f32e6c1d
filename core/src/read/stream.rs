//! Reading one stream.

use crate::event::Position;
use crate::id::EventType;
use crate::payload::Payload;

/// The most events one read returns; larger limits are lowered to this.
pub const MAX_READ_LIMIT: usize = 10_000;

/// Which way a stream read goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Direction {
    /// Oldest first.
    Forward,
    /// Newest first.
    Backward,
}

/// A page of a stream to read.
///
/// ```
/// use annals_core::ReadStream;
/// let newest_ten = ReadStream::backward().limit(10);
/// let from_five = ReadStream::forward().from_version(5);
/// # let _ = (newest_ten, from_five);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadStream {
    direction: Direction,
    from: Option<u64>,
    limit: usize,
}

impl ReadStream {
    /// From the first event, oldest first.
    pub fn forward() -> Self {
        ReadStream {
            direction: Direction::Forward,
            from: None,
            limit: MAX_READ_LIMIT,
        }
    }

    /// From the last event, newest first.
    pub fn backward() -> Self {
        ReadStream {
            direction: Direction::Backward,
            from: None,
            limit: MAX_READ_LIMIT,
        }
    }

    /// Starts at this version (included).
    pub fn from_version(mut self, version: u64) -> Self {
        self.from = Some(version);
        self
    }

    /// Returns at most this many events (at most [`MAX_READ_LIMIT`]).
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit.min(MAX_READ_LIMIT);
        self
    }

    /// The direction.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// The first version to read, if set.
    pub fn start(&self) -> Option<u64> {
        self.from
    }

    /// The most events to return.
    pub fn max_count(&self) -> usize {
        self.limit
    }

    /// Whether a stored version falls in this read's range (ignoring the limit).
    pub fn includes(&self, version: u64) -> bool {
        match (self.direction, self.from) {
            (_, None) => true,
            (Direction::Forward, Some(from)) => version >= from,
            (Direction::Backward, Some(from)) => version <= from,
        }
    }
}

/// The parts of a stored event that rebuilding an aggregate needs: where
/// it is, its version, and what to decode. Read with
/// [`EventStore::read_stream_for_replay`](crate::EventStore::read_stream_for_replay).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ReplayEvent {
    /// Its place in the global log.
    pub position: Position,
    /// Its version in the stream.
    pub version: u64,
    /// Its stored type name.
    pub event_type: EventType,
    /// The schema version of its payload.
    pub schema_version: u32,
    /// The JSON payload, exactly as appended.
    pub payload: Payload,
}

impl ReplayEvent {
    /// Builds one from its stored parts; for store backends.
    pub fn from_parts(
        position: Position,
        version: u64,
        event_type: EventType,
        schema_version: u32,
        payload: Payload,
    ) -> Self {
        ReplayEvent {
            position,
            version,
            event_type,
            schema_version,
            payload,
        }
    }
}

impl From<crate::event::RecordedEvent> for ReplayEvent {
    fn from(event: crate::event::RecordedEvent) -> Self {
        ReplayEvent {
            position: event.position,
            version: event.version,
            event_type: event.event_type,
            schema_version: event.schema_version,
            payload: event.payload,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_capped() {
        assert_eq!(
            ReadStream::forward().limit(usize::MAX).max_count(),
            MAX_READ_LIMIT
        );
    }
}
