//! What the bus did, counted.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counts of what the bus did since it was made, from
/// [`EventBus::counts`](super::EventBus::counts).
///
/// Every handler call is an attempt, and ends either delivered or failed,
/// so `attempts == delivered + failed`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counts {
    /// Committed events the bus read from the log and put through the
    /// middleware.
    pub published: u64,
    /// Events a middleware dropped: no subscriber got them.
    pub dropped: u64,
    /// Handler calls, retries included.
    pub attempts: u64,
    /// Handler calls that returned `Ok`.
    pub delivered: u64,
    /// Handler calls that returned an error or panicked.
    pub failed: u64,
    /// Deliveries that still failed after every retry: the subscriber
    /// moved on without the event.
    pub given_up: u64,
    /// Events subscribers with [`Lag::Skip`](super::Lag::Skip) missed
    /// because their buffer was full.
    pub missed: u64,
}

impl Counts {
    /// Failed handler calls as a share of all handler calls (0.0 before
    /// the first call).
    pub fn error_rate(&self) -> f64 {
        if self.attempts == 0 {
            return 0.0;
        }
        // Counts stay far below 2^52, where f64 is exact.
        #[allow(clippy::cast_precision_loss)]
        let rate = self.failed as f64 / self.attempts as f64;
        rate
    }
}

/// The live counters behind [`Counts`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) published: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) attempts: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) given_up: AtomicU64,
    pub(crate) missed: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Counts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counts {
            published: get(&self.published),
            dropped: get(&self.dropped),
            attempts: get(&self.attempts),
            delivered: get(&self.delivered),
            failed: get(&self.failed),
            given_up: get(&self.given_up),
            missed: get(&self.missed),
        }
    }
}
