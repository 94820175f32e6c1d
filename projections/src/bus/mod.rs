//! An in-process event bus: committed events, read from the log, handed to
//! the subscribers whose pattern matches them.
//!
//! The bus follows the global log the way a projection does (pages after
//! its position, woken by the store's head watch, with a poll for commits a
//! watch cannot see), so a subscriber only ever sees events that are
//! committed, in log order. Each event is routed by its key
//! `"{category}.{event_type}"` (`account.Opened` for an `Opened` event in
//! stream `account-42`); a subscriber picks keys by [`Pattern`]:
//! `account.Opened`, `account.*`, `*.Opened` or `*`.
//!
//! - **Middleware** ([`EventBus::middleware`]) runs on each event before
//!   it is dispatched, in the order it was added: it can enrich the event
//!   (add a field to its metadata, say), observe it, or drop it
//!   ([`Flow::Drop`]), and then no subscriber gets it.
//! - **Isolation**: every subscriber has a task and a bounded buffer of its
//!   own. A handler that fails or panics is counted (and retried, if its
//!   [`SubscribeOptions::retries`] allow), and the others never notice. A
//!   slow handler never slows the bus: when its buffer is full it either
//!   re-reads what it missed from the log ([`Lag::CatchUp`], the default)
//!   or is told how much it missed ([`Lag::Skip`], through
//!   [`SubscribeOptions::on_lagged`]). Memory stays bounded either way.
//! - **Priority**: each event is handed to matching subscribers in priority
//!   order (higher first). A subscriber that is idle starts on it at once,
//!   so priority orders the hand-off, not the end of every handler.
//! - **Counts** ([`EventBus::counts`]): published, dropped, attempts,
//!   delivered, failed, and the error rate.
//!
//! # At most once across a crash
//!
//! The bus lives in the process and keeps nothing on disk. A crash loses
//! what was read but not yet delivered; after a restart the bus starts live
//! from the head ([`EventBus::start`]) or from a position the application
//! saved ([`EventBus::start_at`]). Within a running process a delivery is
//! tried once (plus its retries). Work that must happen (sending the
//! invoice, booking the payment) belongs to a durable handler: a
//! [`Projection`](crate::Projection) or a [`Saga`](crate::saga::Saga) with
//! its checkpoint. The bus is for what may be lost: notifications, caches,
//! live views.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use annals_core::testkit::bank::{Account, AccountCommand, AccountEvent};
//! use annals_core::{CommandContext, InMemoryStore, Repository};
//! use annals_projections::bus::EventBus;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = InMemoryStore::new();
//! let bus = EventBus::new(store.clone());
//! let owners = Arc::new(Mutex::new(Vec::new()));
//! let seen = owners.clone();
//! let _subscription = bus.subscribe("account.Opened", move |event| {
//!     let seen = seen.clone();
//!     async move {
//!         if let AccountEvent::Opened { owner } = event.decode::<AccountEvent>()? {
//!             seen.lock().expect("no handler panics holding it").push(owner);
//!         }
//!         Ok(())
//!     }
//! })?;
//! let running = bus.start().await?;
//!
//! let accounts = Repository::<Account, _>::new(store)?;
//! let open = AccountCommand::Open { owner: "ada".into() };
//! accounts.execute("42", open, &CommandContext::new()).await?;
//! while bus.counts().delivered < 1 {
//!     tokio::time::sleep(std::time::Duration::from_millis(1)).await;
//! }
//! assert_eq!(*owners.lock().expect("not poisoned"), ["ada"]);
//! running.stop().await;
//! # Ok(()) }
//! ```

mod counts;
mod pattern;
mod subscriber;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, Weak};
use std::time::Duration;

use annals_core::{EventStore, Position, ReadAll, ReadError, RecordedEvent};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::projection::HandlerError;
use counts::Counters;
pub use counts::Counts;
pub use pattern::{routing_key, InvalidPattern, Pattern, PatternProblem};
use subscriber::{Gap, HandlerFn, Item, Slot, Unsubscribe, Worker};
pub use subscriber::{Lag, Lagged, SubscribeError, SubscribeOptions, Subscription};

/// How many events the bus reads from the log at a time.
const PAGE: usize = 500;

/// What a middleware decides about an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Flow {
    /// Pass it on (to the next middleware, then to the subscribers).
    Continue,
    /// Drop it: no subscriber gets it, and it is counted as dropped.
    Drop,
}

type MiddlewareFn = Arc<dyn Fn(&mut RecordedEvent) -> Flow + Send + Sync>;

/// The dispatcher's view of the subscribers.
struct Registry {
    /// Every event up to here has been handed out (or dropped).
    dispatched: Position,
    running: bool,
    /// Counts the starts: a subscriber that sees a newer run than its own
    /// takes the new run's start as its floor, even below what it handled.
    run: u64,
    next_id: u64,
    /// In priority order, higher first; equals in subscription order.
    slots: Vec<Slot>,
}

/// What the bus, its dispatcher and its subscribers share.
pub(crate) struct Shared<S> {
    store: S,
    counts: Counters,
    middleware: RwLock<Vec<MiddlewareFn>>,
    registry: Mutex<Registry>,
    poll_interval: Duration,
}

impl<S> Shared<S> {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        // Nothing panics while holding the lock; should it, the registry
        // is still whole, so a poisoned lock is used as it is.
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs the middleware in order; a panicking one is skipped, so that a
    /// faulty observer cannot silence the bus.
    pub(crate) fn run_middleware(&self, event: &mut RecordedEvent) -> Flow {
        let chain = self
            .middleware
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for step in chain {
            let call = AssertUnwindSafe(|| step(event));
            if let Ok(Flow::Drop) = std::panic::catch_unwind(call) {
                return Flow::Drop;
            }
        }
        Flow::Continue
    }

    /// Every event up to here has been handed out (or dropped).
    pub(crate) fn dispatched(&self) -> Position {
        self.registry().dispatched
    }

    /// A subscriber's buffer ran empty: it learns whether it is still
    /// behind and what it missed. `None` once it is unsubscribed.
    pub(crate) fn reached_end(
        &self,
        id: u64,
        run: &mut u64,
        handled: &mut Position,
    ) -> Option<Gap> {
        let mut registry = self.registry();
        let dispatched = registry.dispatched;
        let slot = registry.slots.iter_mut().find(|s| s.id == id)?;
        if slot.run > *run {
            *run = slot.run;
            *handled = slot.floor;
        } else {
            *handled = (*handled).max(slot.floor);
        }
        if slot.behind && *handled >= dispatched {
            // Caught up: the dispatcher pushes again from the next event,
            // under this same lock, so nothing falls between.
            slot.behind = false;
        }
        Some(Gap {
            behind: slot.behind,
            missed: std::mem::take(&mut slot.missed),
        })
    }

    /// Hands one committed event to the matching subscribers.
    fn publish(&self, mut event: RecordedEvent) {
        Counters::add(&self.counts.published);
        let position = event.position;
        if self.run_middleware(&mut event) == Flow::Drop {
            Counters::add(&self.counts.dropped);
            self.registry().dispatched = position;
            return;
        }
        let event = Arc::new(event);
        let mut registry = self.registry();
        for slot in registry.slots.iter_mut() {
            if slot.behind || !slot.pattern.matches(&event) {
                continue;
            }
            let item = Item {
                event: event.clone(),
                missed_before: slot.missed,
                run: slot.run,
                floor: slot.floor,
            };
            match slot.sender.try_send(item) {
                Ok(()) => slot.missed = 0,
                Err(TrySendError::Full(_)) => match slot.lag {
                    Lag::Skip => {
                        slot.missed += 1;
                        Counters::add(&self.counts.missed);
                    }
                    _ => slot.behind = true,
                },
                Err(TrySendError::Closed(_)) => {}
            }
        }
        registry.dispatched = position;
    }
}

impl<S: Send + Sync> Unsubscribe for Shared<S> {
    fn remove(&self, id: u64) {
        // Dropping the slot drops its sender: the worker sees the end.
        let removed = {
            let mut registry = self.registry();
            let at = registry.slots.iter().position(|s| s.id == id);
            at.map(|at| registry.slots.remove(at))
        };
        drop(removed);
    }
}

/// An in-process event bus over one store (see the [module docs](self)).
///
/// Cloning gives another handle on the same bus.
pub struct EventBus<S> {
    shared: Arc<Shared<S>>,
}

impl<S> Clone for EventBus<S> {
    fn clone(&self) -> Self {
        EventBus {
            shared: self.shared.clone(),
        }
    }
}

impl<S> std::fmt::Debug for EventBus<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus")
            .field("counts", &self.shared.counts.snapshot())
            .finish_non_exhaustive()
    }
}

impl<S> EventBus<S>
where
    S: EventStore + Clone + 'static,
{
    /// A bus over `store`, not started, with no subscribers or middleware.
    /// It looks for commits the head watch did not announce every second
    /// (see [`EventBus::with_poll_interval`]).
    pub fn new(store: S) -> Self {
        EventBus::with_poll_interval(store, Duration::from_secs(1))
    }

    /// A bus that looks for commits the head watch did not announce every
    /// `interval` (the fallback for stores whose watch cannot see every
    /// commit); [`EventBus::start`] refuses zero.
    pub fn with_poll_interval(store: S, interval: Duration) -> Self {
        EventBus {
            shared: Arc::new(Shared {
                store,
                counts: Counters::default(),
                middleware: RwLock::new(Vec::new()),
                registry: Mutex::new(Registry {
                    dispatched: Position::START,
                    running: false,
                    run: 0,
                    next_id: 0,
                    slots: Vec::new(),
                }),
                poll_interval: interval,
            }),
        }
    }

    /// Adds a middleware, run on every event after those added before it.
    /// It may change the event (the subscribers see the change), observe
    /// it, or drop it with [`Flow::Drop`]. A middleware that panics is
    /// passed over for that event, so that a faulty observer cannot
    /// silence the bus. A subscriber catching up from the log
    /// ([`Lag::CatchUp`]) puts the events it re-reads through the
    /// middleware again, so a middleware may see an event more than once.
    pub fn middleware(
        &self,
        step: impl Fn(&mut RecordedEvent) -> Flow + Send + Sync + 'static,
    ) -> &Self {
        self.shared
            .middleware
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::new(step));
        self
    }

    /// What the bus did so far.
    pub fn counts(&self) -> Counts {
        self.shared.counts.snapshot()
    }

    /// Subscribes `handler` to the events `pattern` selects, with the
    /// default [`SubscribeOptions`]. The handler gets each event (decode
    /// it with [`RecordedEvent::decode`]). It receives events dispatched
    /// after this call. The subscriber runs in a task of its own: outside
    /// a tokio runtime this fails with [`SubscribeError::NoRuntime`].
    pub fn subscribe<F, Fut>(
        &self,
        pattern: &str,
        handler: F,
    ) -> Result<Subscription, SubscribeError>
    where
        F: Fn(RecordedEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        self.subscribe_with(pattern, SubscribeOptions::default(), handler)
    }

    /// [`EventBus::subscribe`] with options: priority, retries, buffer and
    /// what to do when the buffer is full. A malformed pattern fails with
    /// [`SubscribeError::Pattern`], a buffer of 0 with
    /// [`SubscribeError::InvalidOptions`].
    pub fn subscribe_with<F, Fut>(
        &self,
        pattern: &str,
        options: SubscribeOptions,
        handler: F,
    ) -> Result<Subscription, SubscribeError>
    where
        F: Fn(RecordedEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        let pattern = Pattern::new(pattern)?;
        if options.buffer == 0 {
            return Err(SubscribeError::InvalidOptions {
                setting: "buffer",
                reason: "must be at least 1",
            });
        }
        // Checked before anything is registered, so that a refusal leaves
        // nothing behind.
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| SubscribeError::NoRuntime)?;
        let handler: HandlerFn = Arc::new(move |event| Box::pin(handler(event)));
        let (sender, receiver) = mpsc::channel(options.buffer);
        let closed = Arc::new(AtomicBool::new(false));
        let (id, run, floor) = {
            let mut registry = self.shared.registry();
            let id = registry.next_id;
            registry.next_id += 1;
            let at = registry
                .slots
                .iter()
                .position(|s| s.priority < options.priority)
                .unwrap_or(registry.slots.len());
            let floor = registry.dispatched;
            let run = registry.run;
            registry.slots.insert(
                at,
                Slot {
                    id,
                    priority: options.priority,
                    pattern: pattern.clone(),
                    lag: options.lag,
                    sender,
                    behind: false,
                    missed: 0,
                    floor,
                    run,
                },
            );
            (id, run, floor)
        };
        let worker = Worker {
            id,
            shared: self.shared.clone(),
            pattern,
            handler,
            options,
            closed: closed.clone(),
            receiver,
            run,
            floor,
        };
        runtime.spawn(worker.run());
        let registry: Weak<dyn Unsubscribe> = Arc::downgrade(&self.shared) as Weak<dyn Unsubscribe>;
        Ok(Subscription::new(id, closed, registry))
    }

    /// Starts following the log live, from its head as it is now, in a
    /// task on the current tokio runtime.
    pub async fn start(&self) -> Result<RunningBus, BusStartError> {
        let head = self.shared.store.head().await?;
        self.start_at(head)
    }

    /// Starts following the log after `position` (a position the
    /// application saved, say), in a task on the current tokio runtime.
    /// Fails if the bus is running already or the poll interval is zero.
    pub fn start_at(&self, position: Position) -> Result<RunningBus, BusStartError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| BusStartError::NoRuntime)?;
        {
            let mut registry = self.shared.registry();
            if registry.running {
                return Err(BusStartError::AlreadyRunning);
            }
            if self.shared.poll_interval.is_zero() {
                return Err(BusStartError::InvalidOptions {
                    setting: "poll_interval",
                    reason: "must be more than zero",
                });
            }
            registry.running = true;
            registry.dispatched = position;
            registry.run += 1;
            let run = registry.run;
            for slot in registry.slots.iter_mut() {
                // A new run starts every subscriber afresh at `position`.
                slot.floor = position;
                slot.run = run;
                slot.behind = false;
            }
        }
        let (stop, stop_rx) = watch::channel(false);
        let task = runtime.spawn(follow(self.shared.clone(), position, stop_rx));
        Ok(RunningBus {
            stop,
            task: Some(task),
        })
    }
}

/// Reads the log after `after` and publishes each event, until stopped.
async fn follow<S: EventStore + Clone + 'static>(
    shared: Arc<Shared<S>>,
    mut after: Position,
    mut stop: watch::Receiver<bool>,
) {
    let mut head = shared.store.watch_head();
    let poll = shared.poll_interval;
    loop {
        if *stop.borrow() {
            break;
        }
        let read = shared.store.read_all(ReadAll::after(after).limit(PAGE));
        let page = tokio::select! {
            _ = stop.changed() => break,
            page = read => page,
        };
        let full = match page {
            Ok(page) => {
                let full = page.events.len() >= PAGE;
                for event in page.events {
                    shared.publish(event);
                }
                after = after.max(page.read_through);
                let mut registry = shared.registry();
                registry.dispatched = registry.dispatched.max(after);
                full
            }
            // The log is unreadable for now: try again after the poll.
            Err(_) => false,
        };
        if full {
            continue;
        }
        tokio::select! {
            _ = stop.changed() => break,
            moved = head.wait_past(after) => {
                if moved.is_err() {
                    // The store closed its watch: only the poll is left.
                    tokio::time::sleep(poll).await;
                }
            }
            () = tokio::time::sleep(poll) => {}
        }
    }
    shared.registry().running = false;
}

/// A running bus: dropping it stops the bus, as [`RunningBus::stop`] does.
/// Subscriptions stay; a bus can start again.
#[derive(Debug)]
pub struct RunningBus {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl RunningBus {
    /// Stops reading the log and waits until the bus has stopped; events
    /// already in subscribers' buffers are still delivered.
    pub async fn stop(mut self) {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningBus {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// Why a bus did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusStartError {
    /// The bus is running already: stop it first, or keep using it.
    #[error("the bus is running already")]
    AlreadyRunning,
    /// Called outside a tokio runtime: the bus follows the log in a task,
    /// so start it from within one.
    #[error("starting the bus needs a tokio runtime: call it from within one")]
    NoRuntime,
    /// A setting is out of range: fix the setting.
    #[error("invalid bus option {setting}: {reason}")]
    InvalidOptions {
        /// The setting's name.
        setting: &'static str,
        /// What it must be.
        reason: &'static str,
    },
    /// The head of the log could not be read: retry.
    #[error(transparent)]
    Read(#[from] ReadError),
}
