//! What an application writes: a durable handler, its options, and what
//! each attempt receives.

use std::fmt;
use std::time::Duration;

use annals_core::{EventSet, RequestId};
use async_trait::async_trait;
use tokio::sync::watch;

use crate::envelope::Envelope;
use crate::projection::{Backoff, HandlerError};

/// Work that must happen for committed events: sending an email, calling a
/// webhook. Each (event, handler) pair gets one stored request, run until
/// it succeeds or dies (see [`crate::handlers`]).
///
/// ```
/// use annals_core::testkit::bank::AccountEvent;
/// use annals_projections::handlers::{Attempt, EventHandler};
/// use annals_projections::{async_trait, Envelope, HandlerError};
///
/// struct WelcomeEmail;
///
/// #[async_trait]
/// impl EventHandler for WelcomeEmail {
///     type Events = AccountEvent;
///     const NAME: &'static str = "welcome-email";
///
///     async fn handle(&self, event: &Envelope<AccountEvent>, attempt: &Attempt) -> Result<(), HandlerError> {
///         if let AccountEvent::Opened { owner } = &event.event {
///             println!("attempt {}: welcome, {owner}", attempt.number());
///         }
///         Ok(())
///     }
/// }
/// ```
#[async_trait]
pub trait EventHandler: Send + Sync + 'static {
    /// The events it handles, decoded (and brought up to date by their
    /// upcasters) before each attempt.
    type Events: EventSet;

    /// Its stable name: it identifies the handler's requests and its place
    /// in the log across deploys. ASCII letters, digits, `_`, `-` and `.`,
    /// at most 64 bytes.
    const NAME: &'static str;

    /// Its retry limit, priority and backoff; the defaults unless
    /// overridden.
    fn options(&self) -> HandlerOptions {
        HandlerOptions::default()
    }

    /// The key whose requests must run one at a time in log order (the
    /// stream's id, say, for per-stream order); `None`, the default, runs
    /// every request in parallel. Decided when the request is made.
    fn ordering_key(&self, event: &Envelope<Self::Events>) -> Option<String> {
        let _ = event;
        None
    }

    /// Does the work for one event. An error is a failure, retried after
    /// the backoff until the limit; [`permanent`] makes it dead at once. A
    /// panic is a failure too, and goes to the error reporter. The work may
    /// run more than once (a crash after it, before its outcome was
    /// stored), so it should be idempotent: the event's id is a good key.
    async fn handle(
        &self,
        event: &Envelope<Self::Events>,
        attempt: &Attempt,
    ) -> Result<(), HandlerError>;
}

/// How a handler's requests are made and retried.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct HandlerOptions {
    /// Failures after which a request is dead. Default 5.
    pub max_errors: u32,
    /// Higher runs first among due requests. Default 50. Fixed in each
    /// request when it is made.
    pub priority: i32,
    /// The pause after each failure: exponential, with full jitter.
    /// Default 100 ms, doubling up to 30 s.
    pub backoff: Backoff,
    /// Where a handler with no checkpoint yet starts: the start of the log
    /// (the default: every event gets a request) or its head (only events
    /// committed from now on: for a handler added to a running
    /// application).
    pub start: StartAt,
}

/// Where a new handler starts reading the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum StartAt {
    /// At the first event.
    #[default]
    Beginning,
    /// After the last event committed when it first runs.
    Head,
}

impl Default for HandlerOptions {
    fn default() -> Self {
        HandlerOptions {
            max_errors: 5,
            priority: 50,
            backoff: Backoff::default(),
            start: StartAt::Beginning,
        }
    }
}

impl HandlerOptions {
    /// Sets the number of failures after which a request is dead.
    pub fn max_errors(mut self, max_errors: u32) -> Self {
        self.max_errors = max_errors;
        self
    }

    /// Sets the priority (higher first).
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Sets the backoff: the longest pause after the first failure, and
    /// the cap.
    pub fn backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.backoff = Backoff { base, cap };
        self
    }

    /// Sets where a handler with no checkpoint starts.
    pub fn start(mut self, start: StartAt) -> Self {
        self.start = start;
        self
    }
}

/// One attempt of a request: its number, and the signal that the executor
/// is stopping.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub(crate) number: u32,
    pub(crate) request: RequestId,
    pub(crate) cancel: watch::Receiver<bool>,
}

impl Attempt {
    /// 1 for the first attempt, 2 for the first retry, and so on.
    pub fn number(&self) -> u32 {
        self.number
    }

    /// The request's number in the store.
    pub fn request(&self) -> RequestId {
        self.request
    }

    /// Whether the executor asked the handler to stop.
    pub fn is_cancelled(&self) -> bool {
        *self.cancel.borrow()
    }

    /// Completes when the executor asks the handler to stop: a handler
    /// that waits (on a network call, say) can select on it, return an
    /// error, and the request runs again later. A handler that ignores it
    /// is given the executor's grace period, then dropped.
    pub async fn cancelled(&self) {
        let mut cancel = self.cancel.clone();
        // A closed channel means the executor is gone: stop as well.
        let _ = cancel.wait_for(|stop| *stop).await;
    }
}

/// A failure that retrying cannot fix (an address that does not exist, a
/// webhook that answers 410 Gone): the request goes straight to the dead
/// letters, and to the error reporter.
#[derive(Debug)]
pub struct Permanent(pub HandlerError);

impl fmt::Display for Permanent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Permanent {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// Makes `error` a permanent failure: `return Err(permanent("gone"))`.
pub fn permanent(error: impl Into<HandlerError>) -> HandlerError {
    Box::new(Permanent(error.into()))
}

/// Whether a handler's error is [`permanent`].
pub(crate) fn is_permanent(error: &HandlerError) -> bool {
    error.downcast_ref::<Permanent>().is_some()
}

/// What the error reporter is told: a panic, or a failure that made a
/// request dead.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ErrorReport {
    /// The handler.
    pub handler: &'static str,
    /// The request.
    pub request: RequestId,
    /// The event.
    pub event_id: annals_core::EventId,
    /// Its type.
    pub event_type: annals_core::EventType,
    /// Where it is in the log.
    pub position: annals_core::Position,
    /// Which attempt.
    pub attempt: u32,
    /// The error, or the panic's message.
    pub error: String,
    /// Whether the handler panicked.
    pub panicked: bool,
    /// The stack where it panicked, when it did.
    pub backtrace: Option<String>,
    /// Whether the request is now dead.
    pub dead: bool,
}
