//! The executor: claims due requests, runs their handlers, and stores how
//! each attempt ended.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use annals_core::{
    later, Claim, EventStore, Finish, HandlerRequest, HandlerStore, Position, ReadAll, RequestId,
    Timestamp,
};
use tokio::sync::watch;

use crate::handlers::error::HandlerRunError;
use crate::handlers::handler::{Attempt, ErrorReport};
use crate::handlers::registry::{Outcome, Registered};
use crate::runner::task::SplitMix;
use crate::saga::Clock;

/// Where the error reports go.
pub(crate) type Reporter = Arc<dyn Fn(&ErrorReport) + Send + Sync>;

/// Executions counted by how they ended.
#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) succeeded: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) died: AtomicU64,
    pub(crate) panicked: AtomicU64,
    pub(crate) released: AtomicU64,
    pub(crate) lost: AtomicU64,
    pub(crate) micros: AtomicU64,
}

/// What the executors of one set of handlers share.
pub(crate) struct Executor<S> {
    pub(crate) store: S,
    handlers: HashMap<&'static str, Registered>,
    names: Vec<String>,
    pub(crate) owner: String,
    pub(crate) lease: Duration,
    pub(crate) clock: Arc<dyn Clock>,
    rng: Mutex<SplitMix>,
    reporter: Option<Reporter>,
    pub(crate) stats: Arc<Stats>,
    /// Tells running handlers to stop.
    pub(crate) cancel: watch::Sender<bool>,
}

impl<S: EventStore + HandlerStore> Executor<S> {
    pub(crate) fn new(
        store: S,
        handlers: &[Registered],
        lease: Duration,
        clock: Arc<dyn Clock>,
        jitter_seed: Option<u64>,
        reporter: Option<Reporter>,
        stats: Arc<Stats>,
    ) -> Self {
        let owner = uuid::Uuid::now_v7().to_string();
        Executor {
            store,
            names: handlers.iter().map(|h| h.name.to_owned()).collect(),
            handlers: handlers.iter().map(|h| (h.name, h.clone())).collect(),
            rng: Mutex::new(SplitMix::seeded(&owner, jitter_seed)),
            owner,
            lease,
            clock,
            reporter,
            stats,
            cancel: watch::channel(false).0,
        }
    }

    /// Claims up to `limit` due requests.
    pub(crate) async fn claim(&self, limit: usize) -> Result<Vec<HandlerRequest>, HandlerRunError> {
        let claim = Claim {
            owner: self.owner.clone(),
            handlers: self.names.clone(),
            now: self.clock.now(),
            lease: self.lease,
            limit,
        };
        self.store
            .claim_requests(&claim)
            .await
            .map_err(|e| HandlerRunError::backend("claiming handler requests", e))
    }

    /// Extends the claims on `ids` by a lease.
    pub(crate) async fn renew(&self, ids: &[RequestId]) -> Result<(), HandlerRunError> {
        let until = later(self.clock.now(), self.lease);
        self.store
            .renew_claims(&self.owner, ids, until)
            .await
            .map_err(|e| HandlerRunError::backend("renewing claims", e))
    }

    /// Gives request `id` back, its attempt uncounted.
    pub(crate) async fn release(&self, id: RequestId) -> Result<(), HandlerRunError> {
        self.stats.released.fetch_add(1, Ordering::Relaxed);
        self.store
            .finish_request(id, &self.owner, Finish::Released, self.clock.now())
            .await
            .map(drop)
            .map_err(|e| HandlerRunError::backend("releasing a claim", e))
    }

    /// Runs one claimed request and stores how it ended; returns when it
    /// is due again, if it failed and will be retried.
    pub(crate) async fn run(
        &self,
        request: HandlerRequest,
    ) -> Result<Option<Timestamp>, HandlerRunError> {
        let Some(handler) = self.handlers.get(request.handler.as_str()) else {
            // Claims only name this executor's handlers.
            return Ok(None);
        };
        let max = handler.options.max_errors.max(1);
        let started = Instant::now();
        let (outcome, attempted) = if request.failures >= max {
            // Its last attempts' claims expired (a crash while it ran, more
            // than once): give up rather than crash again.
            let error = format!(
                "gave up after {} failures, the last one an expired claim",
                request.failures
            );
            (
                Outcome::Failed {
                    error,
                    permanent: true,
                },
                false,
            )
        } else {
            (self.attempt(handler, &request).await, true)
        };
        if attempted {
            let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            self.stats.micros.fetch_add(micros, Ordering::Relaxed);
        }
        let now = self.clock.now();
        let failures = request.failures + 1;
        let retry_at = |rng: &Mutex<SplitMix>| {
            if failures >= max {
                return None;
            }
            let unit = rng.lock().unwrap_or_else(PoisonError::into_inner).unit();
            Some(later(now, handler.options.backoff.pause(failures, unit)))
        };
        let (finish, report) = match outcome {
            Outcome::Succeeded => (Finish::Done, None),
            Outcome::Failed { error, permanent } => {
                let retry = if permanent { None } else { retry_at(&self.rng) };
                let report = (retry.is_none()).then(|| (error.clone(), false, None));
                (
                    Finish::Failed {
                        error,
                        retry_at: retry,
                    },
                    report,
                )
            }
            Outcome::Panicked { message, stack } => {
                self.stats.panicked.fetch_add(1, Ordering::Relaxed);
                let error = format!("panicked: {message}");
                let retry = retry_at(&self.rng);
                (
                    Finish::Failed {
                        error,
                        retry_at: retry,
                    },
                    Some((message, true, stack)),
                )
            }
        };
        let due = match &finish {
            Finish::Done => {
                self.stats.succeeded.fetch_add(1, Ordering::Relaxed);
                None
            }
            Finish::Failed {
                retry_at: Some(at), ..
            } => {
                self.stats.retried.fetch_add(1, Ordering::Relaxed);
                Some(*at)
            }
            _ => {
                self.stats.died.fetch_add(1, Ordering::Relaxed);
                None
            }
        };
        let dead = matches!(finish, Finish::Failed { retry_at: None, .. });
        let held = self
            .store
            .finish_request(request.id, &self.owner, finish, now)
            .await
            .map_err(|e| HandlerRunError::backend("storing a request's outcome", e))?;
        if !held {
            // The claim expired and another executor took the request: its
            // outcome is that executor's to store.
            self.stats.lost.fetch_add(1, Ordering::Relaxed);
        }
        if let (Some((error, panicked, backtrace)), Some(reporter)) = (report, &self.reporter) {
            reporter(&ErrorReport {
                handler: handler.name,
                request: request.id,
                event_id: request.event_id,
                event_type: request.event_type.clone(),
                position: request.position,
                attempt: request.attempts,
                error,
                panicked,
                backtrace,
                dead,
            });
        }
        Ok(due)
    }

    /// Reads the request's event and runs one attempt of its handler.
    async fn attempt(&self, handler: &Registered, request: &HandlerRequest) -> Outcome {
        let read = ReadAll::after(Position(request.position.0.saturating_sub(1))).limit(1);
        let stored = match self.store.read_all(read).await {
            Ok(page) => page
                .events
                .into_iter()
                .find(|e| e.position == request.position),
            Err(e) => {
                return Outcome::Failed {
                    error: format!("reading the event failed: {e}"),
                    permanent: false,
                }
            }
        };
        let Some(stored) = stored else {
            return Outcome::Failed {
                error: format!(
                    "the log no longer holds an event at position {}",
                    request.position
                ),
                permanent: true,
            };
        };
        let attempt = Attempt {
            number: request.attempts,
            request: request.id,
            cancel: self.cancel.subscribe(),
        };
        handler
            .handler
            .attempt(stored, request.event_id, &attempt)
            .await
    }
}
