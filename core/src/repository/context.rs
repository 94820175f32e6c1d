//! What a command carries besides itself: its metadata, and what happens
//! when its append meets a conflict.

use uuid::Uuid;

use crate::event::{Metadata, RecordedEvent};

/// Whether a command is decided again when its append meets a conflict.
///
/// Default: never; the conflict is returned to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetryPolicy {
    max_retries: u32,
}

impl RetryPolicy {
    /// Return conflicts to the caller.
    pub fn never() -> Self {
        RetryPolicy { max_retries: 0 }
    }

    /// On a conflict, reload and decide again, up to `max_retries` times.
    pub fn on_conflict(max_retries: u32) -> Self {
        RetryPolicy { max_retries }
    }

    /// How many times a conflicting command is retried.
    pub fn max_retries(&self) -> u32 {
        self.max_retries
    }
}

/// The metadata a command passes on to every event it produces.
///
/// ```
/// use annals_core::CommandContext;
/// let ctx = CommandContext::new()
///     .correlation_id(uuid::Uuid::now_v7())
///     .tenant("acme")
///     .field("user", "ada");
/// assert_eq!(ctx.metadata().tenant.as_deref(), Some("acme"));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommandContext {
    metadata: Metadata,
}

impl CommandContext {
    /// No correlation, causation, tenant or fields.
    pub fn new() -> Self {
        CommandContext::default()
    }

    /// A context for a command issued in reaction to `event` (a saga's
    /// command): its causation id is the event's id, and it keeps the
    /// event's correlation id (or starts one from the event id) and tenant.
    pub fn caused_by(event: &RecordedEvent) -> Self {
        let cause = *event.event_id.as_uuid();
        CommandContext {
            metadata: Metadata {
                correlation_id: Some(event.metadata.correlation_id.unwrap_or(cause)),
                causation_id: Some(cause),
                tenant: event.metadata.tenant.clone(),
                fields: serde_json::Map::new(),
            },
        }
    }

    /// Sets the correlation id.
    pub fn correlation_id(mut self, id: Uuid) -> Self {
        self.metadata.correlation_id = Some(id);
        self
    }

    /// Sets the causation id.
    pub fn causation_id(mut self, id: Uuid) -> Self {
        self.metadata.causation_id = Some(id);
        self
    }

    /// Sets the tenant.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.metadata.tenant = Some(tenant.into());
        self
    }

    /// Adds a user-defined field.
    pub fn field(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.metadata.fields.insert(key.into(), value.into());
        self
    }

    /// The metadata every event of the command gets.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }
}
