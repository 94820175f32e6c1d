//! Handlers as the processor and executors see them: a name, the patterns
//! it is for, its options, and two operations on stored events (which
//! requests to make, and one attempt) that hide its event type.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use annals_core::upcast::Upcasters;
use annals_core::{EventId, EventSet, NewRequest, RecordedEvent};
use futures_util::FutureExt;

use crate::bus::{routing_key, Pattern};
use crate::handlers::handler::{is_permanent, Attempt, EventHandler, HandlerOptions};
use crate::panic::{panic_message, take_stack, Capturing};
use crate::runner::source::envelope;

/// How one attempt ended.
pub(crate) enum Outcome {
    Succeeded,
    Failed {
        error: String,
        permanent: bool,
    },
    Panicked {
        message: String,
        stack: Option<String>,
    },
}

type Attempting<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

/// A handler with its event type hidden.
pub(crate) trait Erased: Send + Sync {
    /// The requests for `stored`: one per part of it (after upcasting) that
    /// the handler's set knows and a pattern matches. A part that fails to
    /// decode gets a request too; its attempts fail, and it ends dead,
    /// where a person sees it.
    fn plan(&self, stored: &RecordedEvent, out: &mut Vec<NewRequest>);

    /// One attempt at the part `event_id` of `stored`.
    fn attempt<'a>(
        &'a self,
        stored: RecordedEvent,
        event_id: EventId,
        attempt: &'a Attempt,
    ) -> Attempting<'a>;
}

/// A registered handler.
#[derive(Clone)]
pub(crate) struct Registered {
    pub(crate) name: &'static str,
    pub(crate) options: HandlerOptions,
    pub(crate) handler: Arc<dyn Erased>,
}

pub(crate) struct Typed<H> {
    pub(crate) handler: H,
    pub(crate) upcasters: Upcasters,
    pub(crate) patterns: Vec<Pattern>,
    pub(crate) priority: i32,
}

impl<H: EventHandler> Typed<H> {
    /// The parts of `stored`, brought up to date.
    fn parts(&self, stored: RecordedEvent) -> Result<Vec<RecordedEvent>, String> {
        let mut parts = Vec::with_capacity(1);
        self.upcasters
            .upcast_into(stored, &mut parts)
            .map_err(|e| e.to_string())?;
        Ok(parts)
    }
}

impl<H: EventHandler> Erased for Typed<H> {
    fn plan(&self, stored: &RecordedEvent, out: &mut Vec<NewRequest>) {
        let request = |part: &RecordedEvent, ordering_key| NewRequest {
            handler: H::NAME.to_owned(),
            event_id: part.event_id,
            position: part.position,
            event_type: part.event_type.clone(),
            stream_id: part.stream_id.clone(),
            priority: self.priority,
            ordering_key,
        };
        let Ok(parts) = self.parts(stored.clone()) else {
            // An upcaster refused it: one request for the stored event, so
            // that its failure shows among the dead letters.
            if self.patterns.iter().any(|p| p.matches(stored)) {
                out.push(request(stored, None));
            }
            return;
        };
        for part in parts {
            if !self
                .patterns
                .iter()
                .any(|p| p.matches_key(&routing_key(&part)))
            {
                continue;
            }
            match H::Events::decode(&part) {
                Ok(None) => {}
                Ok(Some(event)) => {
                    let key = self.handler.ordering_key(&envelope(event, part.clone()));
                    out.push(request(&part, key));
                }
                Err(_) => out.push(request(&part, None)),
            }
        }
    }

    fn attempt<'a>(
        &'a self,
        stored: RecordedEvent,
        event_id: EventId,
        attempt: &'a Attempt,
    ) -> Attempting<'a> {
        Box::pin(async move {
            let failed = |error: String| Outcome::Failed {
                error,
                permanent: true,
            };
            let parts = match self.parts(stored) {
                Ok(parts) => parts,
                Err(error) => return failed(format!("upcasting the event failed: {error}")),
            };
            let Some(part) = parts.into_iter().find(|p| p.event_id == event_id) else {
                return failed(format!(
                    "the event {event_id} is no longer produced by the upcasters"
                ));
            };
            let event = match H::Events::decode(&part) {
                Ok(Some(event)) => envelope(event, part),
                Ok(None) => {
                    return failed(format!(
                        "event type {:?} is not one the handler knows",
                        part.event_type.as_str()
                    ))
                }
                Err(error) => {
                    return failed(format!("decoding the event failed: {}", error.source))
                }
            };
            let run = Capturing(Box::pin(self.handler.handle(&event, attempt)));
            match AssertUnwindSafe(run).catch_unwind().await {
                Ok(Ok(())) => Outcome::Succeeded,
                Ok(Err(error)) => Outcome::Failed {
                    permanent: is_permanent(&error),
                    error: error.to_string(),
                },
                Err(panic) => Outcome::Panicked {
                    message: panic_message(&*panic),
                    stack: take_stack(),
                },
            }
        })
    }
}
