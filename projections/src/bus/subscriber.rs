//! One subscriber: its options, its handle, and the task that feeds its
//! handler from a bounded buffer, catching up from the log when it fell
//! behind.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use annals_core::{EventStore, Position, ReadAll, RecordedEvent};
use futures_util::FutureExt;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;

use super::counts::Counters;
use super::pattern::Pattern;
use super::{Flow, Shared};
use crate::projection::HandlerError;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A subscriber's handler, boxed.
pub(crate) type HandlerFn =
    Arc<dyn Fn(RecordedEvent) -> BoxFuture<Result<(), HandlerError>> + Send + Sync>;

/// What a subscriber whose buffer is full does about the events that do not
/// fit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Lag {
    /// Re-read them from the log once the buffer is empty, then take live
    /// events again: nothing is missed, the subscriber is only late.
    #[default]
    CatchUp,
    /// Miss them: once the subscriber reaches the gap, the
    /// [`on_lagged`](SubscribeOptions::on_lagged) callback is told how many
    /// events it missed ([`Lagged`]), and it goes on with live events.
    Skip,
}

/// The notice a subscriber with [`Lag::Skip`] gets where it missed events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lagged {
    /// How many matching events it missed at this point.
    pub missed: u64,
}

/// How a subscriber is fed. Defaults: priority 50, no retries, a pause of
/// 10 ms between tries, a buffer of 1,024 events, [`Lag::CatchUp`], no
/// lag callback.
#[derive(Clone)]
pub struct SubscribeOptions {
    pub(crate) priority: i32,
    pub(crate) retries: u32,
    pub(crate) retry_pause: Duration,
    pub(crate) buffer: usize,
    pub(crate) lag: Lag,
    pub(crate) on_lagged: Option<Arc<dyn Fn(Lagged) + Send + Sync>>,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions {
            priority: 50,
            retries: 0,
            retry_pause: Duration::from_millis(10),
            buffer: 1_024,
            lag: Lag::CatchUp,
            on_lagged: None,
        }
    }
}

impl std::fmt::Debug for SubscribeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscribeOptions")
            .field("priority", &self.priority)
            .field("retries", &self.retries)
            .field("retry_pause", &self.retry_pause)
            .field("buffer", &self.buffer)
            .field("lag", &self.lag)
            .field("on_lagged", &self.on_lagged.is_some())
            .finish()
    }
}

impl SubscribeOptions {
    /// The defaults (see the type's docs).
    pub fn new() -> Self {
        SubscribeOptions::default()
    }

    /// Higher goes first (default 50): each event is handed to matching
    /// subscribers in this order, and among equals in subscription order.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// How many times a failed delivery (an error or a panic) is tried
    /// again before the subscriber moves on (default 0).
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// The pause before each retry (default 10 ms; zero retries at once).
    pub fn retry_pause(mut self, pause: Duration) -> Self {
        self.retry_pause = pause;
        self
    }

    /// How many events wait for the handler at most (default 1,024; at
    /// least 1). A catch-up reads pages of this size too.
    pub fn buffer(mut self, events: usize) -> Self {
        self.buffer = events;
        self
    }

    /// What happens when the buffer is full (default [`Lag::CatchUp`]).
    pub fn lag(mut self, lag: Lag) -> Self {
        self.lag = lag;
        self
    }

    /// Called with a [`Lagged`] notice where a [`Lag::Skip`] subscriber
    /// missed events, before the events that follow the gap.
    pub fn on_lagged(mut self, notice: impl Fn(Lagged) + Send + Sync + 'static) -> Self {
        self.on_lagged = Some(Arc::new(notice));
        self
    }
}

/// Why a subscription was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubscribeError {
    /// The pattern is malformed: fix the pattern.
    #[error(transparent)]
    Pattern(#[from] super::pattern::InvalidPattern),
    /// An option is out of range: fix the setting.
    #[error("invalid subscribe option {setting}: {reason}")]
    InvalidOptions {
        /// The option's name.
        setting: &'static str,
        /// What it must be.
        reason: &'static str,
    },
    /// Called outside a tokio runtime: a subscriber runs in a task, so
    /// subscribe from within one.
    #[error("subscribing needs a tokio runtime: call it from within one")]
    NoRuntime,
}

/// An event waiting in a subscriber's buffer.
pub(crate) struct Item {
    pub(crate) event: Arc<RecordedEvent>,
    /// Events missed just before this one ([`Lag::Skip`]).
    pub(crate) missed_before: u64,
    /// The run of the bus that pushed it, and where that run started.
    pub(crate) run: u64,
    pub(crate) floor: Position,
}

/// A subscriber as the dispatcher sees it, kept in priority order.
pub(crate) struct Slot {
    pub(crate) id: u64,
    pub(crate) priority: i32,
    pub(crate) pattern: Pattern,
    pub(crate) lag: Lag,
    pub(crate) sender: mpsc::Sender<Item>,
    /// It missed pushes and reads the log until it reaches the dispatcher.
    pub(crate) behind: bool,
    /// Events missed since it last heard ([`Lag::Skip`]).
    pub(crate) missed: u64,
    /// It wants nothing at or before this position (where it subscribed,
    /// or where the bus started).
    pub(crate) floor: Position,
    /// The run of the bus `floor` belongs to.
    pub(crate) run: u64,
}

/// A live subscription; dropping it (or [`unsubscribe`](Self::unsubscribe))
/// ends it. A delivery already running finishes; the buffered events are
/// not delivered.
#[must_use = "dropping a subscription unsubscribes"]
pub struct Subscription {
    id: u64,
    closed: Arc<AtomicBool>,
    registry: Weak<dyn Unsubscribe>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .finish()
    }
}

/// What a subscription needs of its bus to leave it.
pub(crate) trait Unsubscribe: Send + Sync {
    fn remove(&self, id: u64);
}

impl Subscription {
    pub(crate) fn new(id: u64, closed: Arc<AtomicBool>, registry: Weak<dyn Unsubscribe>) -> Self {
        Subscription {
            id,
            closed,
            registry,
        }
    }

    /// Ends the subscription now.
    pub fn unsubscribe(self) {
        drop(self);
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::SeqCst);
        if let Some(registry) = self.registry.upgrade() {
            registry.remove(self.id);
        }
    }
}

/// The task that feeds one handler.
pub(crate) struct Worker<S> {
    pub(crate) id: u64,
    pub(crate) shared: Arc<Shared<S>>,
    pub(crate) pattern: Pattern,
    pub(crate) handler: HandlerFn,
    pub(crate) options: SubscribeOptions,
    pub(crate) closed: Arc<AtomicBool>,
    pub(crate) receiver: mpsc::Receiver<Item>,
    /// The run of the bus it follows, and the position it subscribed at.
    pub(crate) run: u64,
    pub(crate) floor: Position,
}

impl<S: EventStore + Clone + 'static> Worker<S> {
    pub(crate) async fn run(mut self) {
        let mut handled = self.floor;
        let mut run = self.run;
        loop {
            if self.closed.load(Ordering::SeqCst) {
                return;
            }
            let item = match self.receiver.try_recv() {
                Ok(item) => item,
                Err(TryRecvError::Disconnected) => return,
                Err(TryRecvError::Empty) => {
                    // The buffer is empty: a gap, if any, is here.
                    let Some(gap) = self.shared.reached_end(self.id, &mut run, &mut handled) else {
                        return;
                    };
                    self.notice(gap.missed);
                    if gap.behind {
                        self.catch_up(&mut handled).await;
                        continue;
                    }
                    match self.receiver.recv().await {
                        Some(item) => item,
                        None => return,
                    }
                }
            };
            self.notice(item.missed_before);
            if item.run < run {
                // Pushed by a run of the bus that has ended.
                continue;
            }
            if item.run > run {
                run = item.run;
                handled = item.floor;
            }
            if item.event.position <= handled {
                // Already read by a catch-up.
                continue;
            }
            handled = item.event.position;
            self.deliver(&item.event).await;
        }
    }

    fn notice(&self, missed: u64) {
        if missed > 0 {
            if let Some(notice) = &self.options.on_lagged {
                let call = AssertUnwindSafe(|| notice(Lagged { missed }));
                // A panicking callback must not end the subscriber.
                let _ = std::panic::catch_unwind(call);
            }
        }
    }

    /// Reads one page after `handled` from the log, up to what the bus has
    /// dispatched (never past where it stopped reading), and delivers what
    /// the middleware lets through and the pattern selects: in that order,
    /// as live events are.
    async fn catch_up(&self, handled: &mut Position) {
        let until = self.shared.dispatched();
        if *handled >= until {
            return;
        }
        let limit = self.options.buffer.min(annals_core::store::MAX_READ_LIMIT);
        let page = match self
            .shared
            .store
            .read_all(ReadAll::after(*handled).limit(limit))
            .await
        {
            Ok(page) => page,
            Err(_) => {
                // The log is unreadable for now: try again after a pause.
                tokio::time::sleep(self.shared.poll_interval).await;
                return;
            }
        };
        for mut event in page.events {
            if self.closed.load(Ordering::SeqCst) {
                return;
            }
            let position = event.position;
            if position > until {
                *handled = until;
                return;
            }
            if self.shared.run_middleware(&mut event) == Flow::Continue
                && self.pattern.matches(&event)
            {
                self.deliver(&event).await;
            }
            *handled = position;
        }
        *handled = (*handled).max(page.read_through.min(until));
    }

    /// Calls the handler, trying again after a failure as often as the
    /// options allow. Errors and panics are counted, never passed on.
    async fn deliver(&self, event: &RecordedEvent) {
        let counts: &Counters = &self.shared.counts;
        for attempt in 0..=self.options.retries {
            if attempt > 0 && !self.options.retry_pause.is_zero() {
                tokio::time::sleep(self.options.retry_pause).await;
            }
            // Unsubscribed meanwhile: no more attempts.
            if attempt > 0 && self.closed.load(Ordering::SeqCst) {
                return;
            }
            let handler = self.handler.clone();
            let event = event.clone();
            let call = AssertUnwindSafe(async move { handler(event).await }).catch_unwind();
            let outcome = call.await;
            // Counted with its outcome, so that attempts always equal
            // delivered plus failed.
            Counters::add(&counts.attempts);
            match outcome {
                Ok(Ok(())) => {
                    Counters::add(&counts.delivered);
                    return;
                }
                Ok(Err(_)) | Err(_) => Counters::add(&counts.failed),
            }
        }
        Counters::add(&counts.given_up);
    }
}

/// What a subscriber learns when its buffer runs empty.
pub(crate) struct Gap {
    /// It is still behind the dispatcher: read the log.
    pub(crate) behind: bool,
    /// Events it missed ([`Lag::Skip`]).
    pub(crate) missed: u64,
}
