//! One upcasting step, and the stored form of an event it works on.

use std::fmt;
use std::sync::Arc;

use crate::event::Metadata;

/// An event in its stored form, as an upcaster sees and changes it.
///
/// Its `Debug` shows the payload's shape, never its content.
#[derive(Clone, PartialEq)]
pub struct UpcastEvent {
    /// The stored type name.
    pub event_type: String,
    /// The payload's schema version.
    pub schema_version: u32,
    /// The payload, parsed.
    pub payload: serde_json::Value,
    /// The event's metadata.
    pub metadata: Metadata,
}

impl fmt::Debug for UpcastEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Payloads may hold personal data: show what kind of value it is.
        let shape = match &self.payload {
            serde_json::Value::Object(map) => format!("object of {} keys", map.len()),
            serde_json::Value::Array(items) => format!("array of {} items", items.len()),
            serde_json::Value::Null => "null".to_owned(),
            _ => "scalar".to_owned(),
        };
        f.debug_struct("UpcastEvent")
            .field("event_type", &self.event_type)
            .field("schema_version", &self.schema_version)
            .field("payload", &format_args!("{shape}"))
            .field("metadata", &self.metadata)
            .finish()
    }
}

/// Why an upcasting step failed, in words that never quote stored data.
///
/// - `Err("amount is missing")`: a fixed message, from any `&'static str`;
/// - `serde_json::from_value(...)?`: a serde_json error, redacted as
///   everywhere else in annals (`invalid type: string, expected u64`,
///   without the string);
/// - [`StepError::new`] for a message built at run time: the caller vouches
///   that it holds no payload or metadata.
///
/// ```
/// use annals_core::upcast::{StepError, Upcaster};
/// #[derive(serde::Deserialize)]
/// struct V1 { euros: u64 }
/// let step = Upcaster::reshape("Deposited", 1, |payload| {
///     let v1: V1 = serde_json::from_value(payload.take())?; // redacted on failure
///     *payload = serde_json::json!({ "cents": v1.euros * 100 });
///     Ok::<(), StepError>(())
/// });
/// # let _ = step;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepError(String);

impl StepError {
    /// A message built at run time. It reaches error messages and logs:
    /// never put payload or metadata values in it.
    pub fn new(message: impl Into<String>) -> Self {
        StepError(message.into())
    }

    /// The message.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&'static str> for StepError {
    fn from(message: &'static str) -> Self {
        StepError(message.to_owned())
    }
}

impl From<serde_json::Error> for StepError {
    fn from(error: serde_json::Error) -> Self {
        StepError(crate::payload::redacted_message(&error))
    }
}

type Step = dyn Fn(UpcastEvent) -> Result<Vec<UpcastEvent>, StepError> + Send + Sync;

/// One step of an upcaster chain: events of `(event_type, from_version)` in,
/// events of the declared `(type, version)` pairs out.
#[derive(Clone)]
pub struct Upcaster {
    pub(crate) event_type: String,
    pub(crate) from_version: u32,
    pub(crate) produces: Vec<(String, u32)>,
    step: Arc<Step>,
}

impl fmt::Debug for Upcaster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upcaster")
            .field("event_type", &self.event_type)
            .field("from_version", &self.from_version)
            .field("produces", &self.produces)
            .finish()
    }
}

impl Upcaster {
    /// Reshapes the JSON of `event_type` at `from_version` into version
    /// `from_version + 1` of the same type.
    pub fn reshape<F, E>(event_type: &str, from_version: u32, reshape: F) -> Self
    where
        F: Fn(&mut serde_json::Value) -> Result<(), E> + Send + Sync + 'static,
        E: Into<StepError>,
    {
        let next = from_version.saturating_add(1);
        Upcaster::new(
            event_type,
            from_version,
            &[(event_type, next)],
            move |mut event| {
                reshape(&mut event.payload).map_err(Into::into)?;
                event.schema_version = next;
                Ok::<_, StepError>(vec![event])
            },
        )
    }

    /// Renames `event_type` at `from_version` to `new_type`, keeping the
    /// version and the payload.
    pub fn rename(event_type: &str, from_version: u32, new_type: &str) -> Self {
        let renamed = new_type.to_owned();
        Upcaster::new(
            event_type,
            from_version,
            &[(new_type, from_version)],
            move |mut event| {
                event.event_type.clone_from(&renamed);
                Ok::<_, StepError>(vec![event])
            },
        )
    }

    /// Any step: `produces` declares every `(type, version)` the step may
    /// return, so that the registry can check the chains at build time.
    /// Returning several events splits one stored event into several; they
    /// keep its stream, version and position.
    pub fn new<F, E>(event_type: &str, from_version: u32, produces: &[(&str, u32)], step: F) -> Self
    where
        F: Fn(UpcastEvent) -> Result<Vec<UpcastEvent>, E> + Send + Sync + 'static,
        E: Into<StepError>,
    {
        Upcaster {
            event_type: event_type.to_owned(),
            from_version,
            produces: produces
                .iter()
                .map(|(t, v)| ((*t).to_owned(), *v))
                .collect(),
            step: Arc::new(move |event| step(event).map_err(Into::into)),
        }
    }

    /// The type this step reads.
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// The version this step reads.
    pub fn from_version(&self) -> u32 {
        self.from_version
    }

    /// Runs the step. A step is application code: one that panics on an
    /// unexpected payload fails with an error, not the process.
    pub(crate) fn run(&self, event: UpcastEvent) -> Result<Vec<UpcastEvent>, StepError> {
        let run = std::panic::AssertUnwindSafe(|| (self.step)(event));
        std::panic::catch_unwind(run).unwrap_or_else(|_| Err("the upcaster panicked".into()))
    }
}
