//! Where a saga's time comes from: the system's, or one a test moves.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use annals_core::Timestamp;
use tokio::sync::watch;

/// The time, and a way to wait for one. Deadlines use it.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> Timestamp;

    /// Waits until `time` has come.
    fn sleep_until(&self, time: Timestamp) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// The system's clock. The default.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    fn sleep_until(&self, time: Timestamp) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let micros = time.as_unix_micros() - Timestamp::now().as_unix_micros();
        let wait = Duration::from_micros(u64::try_from(micros).unwrap_or(0));
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that moves only when told to: for tests of deadlines.
///
/// ```
/// use std::time::Duration;
/// use annals_projections::saga::{Clock, ManualClock};
/// let clock = ManualClock::starting_at(annals_core::Timestamp::from_unix_micros(0));
/// clock.advance(Duration::from_secs(300));
/// assert_eq!(clock.now().as_unix_micros(), 300_000_000);
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<watch::Sender<Timestamp>>,
}

impl ManualClock {
    /// A clock standing at `time`.
    pub fn starting_at(time: Timestamp) -> Self {
        ManualClock {
            now: Arc::new(watch::channel(time).0),
        }
    }

    /// Moves the clock forward, waking whoever waits for a time it reaches.
    pub fn advance(&self, by: Duration) {
        let micros = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.now.send_modify(|now| {
            *now = Timestamp::from_unix_micros(now.as_unix_micros().saturating_add(micros));
        });
    }
}

impl Default for ManualClock {
    /// A clock standing at the system's time now.
    fn default() -> Self {
        ManualClock::starting_at(Timestamp::now())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.borrow()
    }

    fn sleep_until(&self, time: Timestamp) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let mut now = self.now.subscribe();
        Box::pin(async move {
            // The sender lives as long as the clock: the wait ends when the
            // time comes.
            let _ = now.wait_for(|now| *now >= time).await;
        })
    }
}
