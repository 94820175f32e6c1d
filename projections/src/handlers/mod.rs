//! Durable event handlers: work that must happen for committed events
//! (send the welcome email, call the webhook), each (event, handler) pair
//! done once, across crashes, with retries, backoff and dead letters.
//!
//! Work is written down before it is done:
//!
//! 1. **The processor** follows the log from each handler's checkpoint
//!    and, for every event a handler is for, stores one *request* in the
//!    same store step that moves the handler's checkpoint past the event
//!    ([`HandlerStore::enqueue_requests`](annals_core::HandlerStore)). A
//!    crash before that step reads the event again; after it, the request
//!    is stored. Each pair gets exactly one request.
//! 2. **Executors** claim due requests (highest priority first, then
//!    oldest), run their handlers with a bounded pool of workers, and store
//!    the outcome. A claim holds for a lease, renewed while the handler
//!    runs, so two executors (in one process or several) never run one
//!    request at once; the claim of an executor that died expires, and the
//!    request runs again, its lost attempt counted as a failure.
//! 3. **Failures** are retried after an exponential backoff with full
//!    jitter, until the handler's `max_errors` (default 5); then the
//!    request is *dead*: kept with its error history, listed, requeued or
//!    discarded through [`DeadLetters`]. A [`permanent`] error is dead at
//!    once. A panic is a failure, and goes, with its stack, to the error
//!    reporter ([`Handlers::error_reporter`]).
//! 4. **Order**: requests run in parallel, unless the handler gives an
//!    [`EventHandler::ordering_key`]: then a request waits while an earlier
//!    request of its key is pending, and a poison event holds back only
//!    its own key, until it dies (a dead request no longer holds its key;
//!    requeued, it runs after those that went on).
//!
//! A handler runs *at least once* per request: a crash after its work and
//! before its outcome is stored runs it again. Make the work idempotent
//! (the event id is the key to give a mail service or a webhook).
//!
//! Two schedulers: [`Handlers::start`] runs the processor and an executor
//! with its pool concurrently; [`Handlers::cooperative`] alternates the two
//! in one loop, which a test drives round by round with a
//! [`ManualClock`](crate::saga::ManualClock).
//!
//! ```
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::sync::Arc;
//! use annals_core::testkit::bank::{Account, AccountCommand, AccountEvent};
//! use annals_core::{CommandContext, InMemoryStore, Repository};
//! use annals_projections::handlers::{Attempt, EventHandler, Handlers};
//! use annals_projections::{async_trait, Envelope, HandlerError};
//!
//! struct WelcomeEmail {
//!     sent: Arc<AtomicU32>,
//! }
//!
//! #[async_trait]
//! impl EventHandler for WelcomeEmail {
//!     type Events = AccountEvent;
//!     const NAME: &'static str = "welcome-email";
//!
//!     async fn handle(&self, event: &Envelope<AccountEvent>, _: &Attempt) -> Result<(), HandlerError> {
//!         self.sent.fetch_add(1, Ordering::SeqCst);
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = InMemoryStore::new();
//! let sent = Arc::new(AtomicU32::new(0));
//! let running = Handlers::new(store.clone())
//!     .on("account.Opened", WelcomeEmail { sent: sent.clone() })
//!     .start()?;
//!
//! let accounts = Repository::<Account, _>::new(store)?;
//! accounts.execute("42", AccountCommand::Open { owner: "ada".into() }, &CommandContext::new()).await?;
//! accounts.execute("42", AccountCommand::Deposit { amount: 5 }, &CommandContext::new()).await?;
//! running.wait_settled().await?;
//! assert_eq!(sent.load(Ordering::SeqCst), 1);
//! assert_eq!(running.counts().await?.requests.done, 1);
//! running.stop().await;
//! # Ok(()) }
//! ```

mod error;
mod executor;
mod handler;
mod processor;
mod registry;
mod running;

use std::sync::Arc;
use std::time::Duration;

use annals_core::upcast::Upcasters;
use annals_core::{EventSet, EventStore, HandlerStore};

use crate::bus::Pattern;
use crate::saga::{Clock, SystemClock};
pub use error::{HandlerRunError, HandlersStartError, HandlersWaitError};
use executor::{Executor, Reporter, Stats};
pub use handler::{
    permanent, Attempt, ErrorReport, EventHandler, HandlerOptions, Permanent, StartAt,
};
pub use processor::checkpoint_name;
use processor::Processor;
use registry::{Registered, Typed};
pub use running::{Cooperative, DeadLetters, Executions, HandlerCounts, Progress, RunningHandlers};
use running::{Settings, Shared};

/// What both schedulers are made of.
type Parts<S> = (Processor<S>, Executor<S>, Arc<Shared>, Settings);

/// Durable handlers to run on a store: which handlers for which events,
/// and how.
pub struct Handlers<S> {
    store: S,
    handlers: Vec<Registered>,
    invalid: Option<HandlersStartError>,
    workers: usize,
    batch_size: usize,
    poll_interval: Duration,
    lease: Duration,
    grace: Duration,
    clock: Arc<dyn Clock>,
    jitter_seed: Option<u64>,
    reporter: Option<Reporter>,
}

impl<S: EventStore + HandlerStore + Clone + 'static> Handlers<S> {
    /// No handlers yet, on `store`; 4 workers, a 30 s lease, a 1 s poll
    /// for commits the head watch cannot see, a 5 s grace period on stop.
    pub fn new(store: S) -> Self {
        Handlers {
            store,
            handlers: Vec::new(),
            invalid: None,
            workers: 4,
            batch_size: 500,
            poll_interval: Duration::from_secs(1),
            lease: Duration::from_secs(30),
            grace: Duration::from_secs(5),
            clock: Arc::new(SystemClock),
            jitter_seed: None,
            reporter: None,
        }
    }

    /// Runs `handler` for the events of its set whose routing key
    /// (`category.Type`, as on the [bus](crate::bus)) matches `pattern`:
    /// `account.Opened`, `account.*`, `*.Opened` or `*`.
    pub fn on<H: EventHandler>(self, pattern: &str, handler: H) -> Self {
        self.on_each(&[pattern], handler)
    }

    /// Runs `handler` for the events of its set that match any of
    /// `patterns`.
    pub fn on_each<H: EventHandler>(mut self, patterns: &[&str], handler: H) -> Self {
        let name = H::NAME;
        if let Err(error) = crate::runner::check_name(name) {
            let crate::StartError::InvalidName { name, reason } = error else {
                unreachable!("check_name only reports invalid names")
            };
            self.invalid
                .get_or_insert(HandlersStartError::InvalidName { name, reason });
        }
        if self.handlers.iter().any(|h| h.name == name) {
            self.invalid
                .get_or_insert(HandlersStartError::DuplicateName {
                    name: name.to_owned(),
                });
        }
        let mut parsed = Vec::with_capacity(patterns.len());
        for pattern in patterns {
            match Pattern::new(pattern) {
                Ok(pattern) => parsed.push(pattern),
                Err(source) => {
                    self.invalid
                        .get_or_insert(HandlersStartError::InvalidPattern {
                            handler: name,
                            source,
                        });
                }
            }
        }
        let upcasters = match H::Events::upcasters(Upcasters::builder()).build() {
            Ok(upcasters) => upcasters,
            Err(source) => {
                self.invalid
                    .get_or_insert(HandlersStartError::InvalidUpcasters {
                        handler: name,
                        source,
                    });
                return self;
            }
        };
        let options = handler.options();
        if options.max_errors == 0 {
            self.invalid
                .get_or_insert(HandlersStartError::InvalidOptions {
                    setting: "max_errors",
                    reason: "must be at least 1",
                });
        }
        self.handlers.push(Registered {
            name,
            options,
            handler: Arc::new(Typed {
                handler,
                upcasters,
                patterns: parsed,
                priority: options.priority,
            }),
        });
        self
    }

    /// How many requests run at once (default 4).
    pub fn workers(mut self, workers: usize) -> Self {
        if workers == 0 {
            self.invalid
                .get_or_insert(HandlersStartError::InvalidOptions {
                    setting: "workers",
                    reason: "must be at least 1",
                });
        }
        self.workers = workers;
        self
    }

    /// How many events the processor reads at a time (default 500).
    pub fn batch_size(mut self, events: usize) -> Self {
        if events == 0 {
            self.invalid
                .get_or_insert(HandlersStartError::InvalidOptions {
                    setting: "batch_size",
                    reason: "must be at least 1",
                });
        }
        self.batch_size = events;
        self
    }

    /// How often to look for commits the head watch cannot see (another
    /// process'), requeues from elsewhere and retries others scheduled
    /// (default 1 s).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        if interval.is_zero() {
            self.invalid
                .get_or_insert(HandlersStartError::InvalidOptions {
                    setting: "poll_interval",
                    reason: "must be longer than zero",
                });
        }
        self.poll_interval = interval;
        self
    }

    /// How long a claim holds without renewal (default 30 s): the time a
    /// request waits after its executor dies. Claims are renewed every
    /// third of it while the handler runs.
    pub fn lease(mut self, lease: Duration) -> Self {
        if lease < Duration::from_millis(30) {
            self.invalid
                .get_or_insert(HandlersStartError::InvalidOptions {
                    setting: "lease",
                    reason: "must be at least 30 ms",
                });
        }
        self.lease = lease;
        self
    }

    /// How long handlers in flight may take to finish once a stop is asked
    /// (default 5 s); those still running then are dropped and their
    /// requests released.
    pub fn stop_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The clock for due times, claims and backoff (default the system's).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Seeds the backoff's jitter, for tests that check delays.
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.jitter_seed = Some(seed);
        self
    }

    /// Called with each panic (with its stack) and each failure that made
    /// a request dead.
    pub fn error_reporter(mut self, report: impl Fn(&ErrorReport) + Send + Sync + 'static) -> Self {
        self.reporter = Some(Arc::new(report));
        self
    }

    fn parts(self) -> Result<Parts<S>, HandlersStartError> {
        if let Some(invalid) = self.invalid {
            return Err(invalid);
        }
        if self.handlers.is_empty() {
            return Err(HandlersStartError::NoHandlers);
        }
        let stats = Arc::new(Stats::default());
        let executor = Executor::new(
            self.store.clone(),
            &self.handlers,
            self.lease,
            self.clock.clone(),
            self.jitter_seed,
            self.reporter,
            stats.clone(),
        );
        let processor = Processor::new(self.store, self.handlers, self.batch_size, self.clock);
        let settings = Settings {
            workers: self.workers,
            poll_interval: self.poll_interval,
            grace: self.grace,
        };
        Ok((processor, executor, Shared::new(stats), settings))
    }

    /// Starts the concurrent scheduler: the processor and the executor's
    /// workers run in tasks of their own. Needs a tokio runtime.
    pub fn start(self) -> Result<RunningHandlers<S>, HandlersStartError> {
        tokio::runtime::Handle::try_current().map_err(|_| HandlersStartError::NoRuntime)?;
        let (processor, executor, shared, settings) = self.parts()?;
        Ok(running::start_concurrent(
            processor, executor, shared, settings,
        ))
    }

    /// The cooperative scheduler: one loop, driven by the caller
    /// ([`Cooperative::run_until_idle`]) or started in a task
    /// ([`Cooperative::start`]).
    pub fn cooperative(self) -> Result<Cooperative<S>, HandlersStartError> {
        let (processor, executor, shared, settings) = self.parts()?;
        Ok(Cooperative::new(processor, executor, shared, settings))
    }
}
