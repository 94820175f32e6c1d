//! Fault points of the writer, for tests that fail it at every step.
//!
//! Without the `fault-injection` feature every check is a no-op the
//! compiler removes. With it, a [`FaultPlan`] makes the k-th step the writer
//! reaches fail with an I/O error, the way SQLite's own test suite walks a
//! fault through every step of an operation.

/// A place in a write transaction where a fault can be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// `BEGIN IMMEDIATE`.
    Begin,
    /// The savepoint around one append.
    Savepoint,
    /// One row insert.
    Insert,
    /// `COMMIT`.
    Commit,
}

#[cfg(feature = "fault-injection")]
mod plan {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    /// Makes the k-th step the writer reaches fail (counting from 1), once.
    ///
    /// Clones share their count, so a test keeps one clone to read how many
    /// steps were reached.
    #[derive(Debug, Clone, Default)]
    pub struct FaultPlan {
        fail_at: u64,
        reached: Arc<AtomicU64>,
    }

    impl FaultPlan {
        /// Fails the `k`-th step (`k` of 0 never fails).
        pub fn fail_at_step(k: u64) -> Self {
            FaultPlan {
                fail_at: k,
                reached: Arc::new(AtomicU64::new(0)),
            }
        }

        /// How many steps the writer has reached so far.
        pub fn steps_reached(&self) -> u64 {
            self.reached.load(Ordering::SeqCst)
        }

        /// Counts one step; whether it is the one to fail.
        pub(crate) fn fires(&self) -> bool {
            let n = self.reached.fetch_add(1, Ordering::SeqCst) + 1;
            n == self.fail_at
        }
    }
}

#[cfg(feature = "fault-injection")]
pub use plan::FaultPlan;

/// The writer's fault points.
#[derive(Debug, Clone, Default)]
pub(crate) struct Faults {
    #[cfg(feature = "fault-injection")]
    plan: Option<FaultPlan>,
}

impl Faults {
    pub(crate) fn from_options(_options: &crate::options::SqliteOptions) -> Self {
        Faults {
            #[cfg(feature = "fault-injection")]
            plan: _options.fault_plan.clone(),
        }
    }

    /// Fails with an injected I/O error if the plan says this step fails.
    #[cfg_attr(not(feature = "fault-injection"), allow(clippy::unused_self))]
    pub(crate) fn check(&self, _step: Step) -> Result<(), rusqlite::Error> {
        #[cfg(feature = "fault-injection")]
        if self.plan.as_ref().is_some_and(FaultPlan::fires) {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR),
                Some(format!("injected fault at {_step:?}")),
            ));
        }
        Ok(())
    }
}
