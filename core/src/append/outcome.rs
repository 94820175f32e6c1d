//! What an append recorded.

use std::collections::HashMap;

use crate::event::{EventId, Position, RecordedEvent};
use crate::id::StreamId;

/// What an append recorded, in commit order.
#[derive(Debug, Clone, PartialEq)]
pub struct AppendOutcome {
    events: Vec<RecordedEvent>,
}

impl AppendOutcome {
    /// Wraps the recorded events of one append, in commit order.
    pub fn new(events: Vec<RecordedEvent>) -> Self {
        AppendOutcome { events }
    }

    /// The recorded events, in commit order.
    pub fn events(&self) -> &[RecordedEvent] {
        &self.events
    }

    /// The recorded events, owned.
    pub fn into_events(self) -> Vec<RecordedEvent> {
        self.events
    }

    /// The position of the first event.
    pub fn first_position(&self) -> Option<Position> {
        self.events.first().map(|e| e.position)
    }

    /// The position of the last event: wait for this to see the append.
    pub fn last_position(&self) -> Option<Position> {
        self.events.last().map(|e| e.position)
    }

    /// The stream's version after the append, if the append wrote to it.
    pub fn stream_version(&self, stream: &StreamId) -> Option<u64> {
        self.events
            .iter()
            .rev()
            .find(|e| &e.stream_id == stream)
            .map(|e| e.version)
    }

    /// Positions of the events, by event id.
    pub fn positions(&self) -> HashMap<EventId, Position> {
        self.events
            .iter()
            .map(|e| (e.event_id, e.position))
            .collect()
    }
}
