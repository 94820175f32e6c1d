//! The kinds of projection, and the choices each one makes.

use std::time::Duration;

use annals_core::EventSet;
use async_trait::async_trait;
use rusqlite::Transaction;

use crate::envelope::Envelope;

/// What a handler returns when it cannot handle an event: any error.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// A read model in an SQLite database of its own, updated exactly once.
///
/// The runner opens a transaction on the read model's database, calls
/// [`handle`](SqliteProjection::handle) for each event of a batch with that
/// transaction, writes the projection's checkpoint into the same database,
/// and commits. The tables and the checkpoint move together: a crash at any
/// point neither loses an event's effect nor applies it twice.
///
/// # A database of its own
///
/// The read model's database is its own file, beside the event store's.
/// The event store's file has one writer, which commits appends in groups;
/// a read model in that same file would be a second writer, holding the
/// file's write lock while its handler runs, and appends would wait behind
/// it (or fail with a busy error once the busy timeout passes). In a file of
/// its own, a read model's batches never delay a command, and a rebuild
/// never grows the event store's WAL. It can share the events' file (give
/// the runner that path) when a query must join events and model in one
/// database, at that cost. Several read models may share one file of their
/// own: each keeps its own checkpoint there, and their batches take turns.
///
/// # Schema and versions
///
/// The schema is declared by [`create`](SqliteProjection::create), which
/// makes the empty tables of the current [`VERSION`](SqliteProjection::VERSION).
/// A read model is derived data, so it is never migrated in place: a change
/// to its tables or to what it makes of events bumps `VERSION`, and the
/// runner rebuilds it from the log into a shadow database while the old one
/// keeps serving, then swaps the new tables in, in one transaction. The
/// tables `create` made are the ones the runner drops when it swaps or
/// resets the model.
///
/// ```
/// use annals_core::testkit::bank::AccountEvent;
/// use annals_projections::{Envelope, HandlerError, SqliteProjection};
/// use rusqlite::{params, Transaction};
///
/// struct Balances;
///
/// impl SqliteProjection for Balances {
///     type Events = AccountEvent;
///     const NAME: &'static str = "balances";
///
///     fn create(&self, db: &Transaction<'_>) -> Result<(), HandlerError> {
///         db.execute_batch("CREATE TABLE balances (account TEXT PRIMARY KEY, cents INTEGER NOT NULL)")?;
///         Ok(())
///     }
///
///     fn handle(&mut self, db: &Transaction<'_>, event: &Envelope<AccountEvent>) -> Result<(), HandlerError> {
///         let change = match event.event {
///             AccountEvent::Opened { .. } => 0,
///             AccountEvent::Deposited { amount } => i64::try_from(amount)?,
///             AccountEvent::Withdrawn { amount } => -i64::try_from(amount)?,
///         };
///         db.execute(
///             "INSERT INTO balances VALUES (?1, ?2)
///              ON CONFLICT (account) DO UPDATE SET cents = cents + ?2",
///             params![event.stream_id.id(), change],
///         )?;
///         Ok(())
///     }
/// }
/// ```
pub trait SqliteProjection: Send + 'static {
    /// The events it reads; the runner pushes their filter into the store.
    type Events: EventSet;

    /// Its name: stable across deploys, since it keys the checkpoint. ASCII
    /// letters, digits, `_`, `-` and `.`; at most 64 bytes.
    const NAME: &'static str;

    /// The version of its tables and of what it makes of events. When the
    /// stored model was built by another version, the runner rebuilds it.
    const VERSION: u32 = 1;

    /// Creates the model's empty tables (and their indexes).
    fn create(&self, db: &Transaction<'_>) -> Result<(), HandlerError>;

    /// Applies one event to the model, inside the batch's transaction.
    ///
    /// It must not commit or roll back, and must not keep state outside
    /// the database that a rolled-back batch would leave behind: after a
    /// failure the batch is rolled back and part of it handled again.
    fn handle(
        &mut self,
        db: &Transaction<'_>,
        event: &Envelope<Self::Events>,
    ) -> Result<(), HandlerError>;

    /// Applies a batch of events, in order, inside the batch's
    /// transaction. The default calls [`handle`](SqliteProjection::handle)
    /// for each; override it to work on the batch as a whole, preparing a
    /// statement once rather than once per event, say (the bench's
    /// `rebuild` scenario measures the difference). On a failure, say which
    /// event failed: the batch is rolled back and the events before it are
    /// handled again.
    fn handle_batch(
        &mut self,
        db: &Transaction<'_>,
        events: &[Envelope<Self::Events>],
    ) -> Result<(), BatchFailure> {
        for (index, event) in events.iter().enumerate() {
            self.handle(db, event)
                .map_err(|error| BatchFailure { index, error })?;
        }
        Ok(())
    }

    /// What the runner does when `handle` fails or panics.
    fn on_failure(&self) -> FailurePolicy {
        FailurePolicy::Stop
    }

    /// What the runner does with an event of a type the projection's event
    /// set does not know, inside a category it reads.
    fn on_unknown_event(&self) -> UnknownEvents {
        UnknownEvents::Fail
    }
}

/// A read model in a PostgreSQL database (typically the event store's),
/// updated exactly once.
///
/// The runner opens a transaction on the database, calls
/// [`handle`](PostgresProjection::handle) for each event of a batch with
/// that transaction, writes the projection's checkpoint into the same
/// database, and commits: the tables and the checkpoint move together, so
/// a crash neither loses an event's effect nor applies it twice.
///
/// # The model's schema
///
/// The model lives in a schema the runner is given (see
/// [`Projections::postgres`](crate::Projections::postgres)), beside the
/// table of checkpoints (`annals_projections`) and of skipped events
/// (`annals_skipped_events`). Each transaction the runner hands over has
/// its `search_path` set to that schema alone: write the model's names
/// unqualified, and qualify anything outside it (`public.rates`).
///
/// # Schema and versions
///
/// [`create`](PostgresProjection::create) makes the empty tables (and
/// their indexes, views and sequences) of the current
/// [`VERSION`](PostgresProjection::VERSION). A read model is derived data,
/// so it is never migrated in place: a change to its tables or to what it
/// makes of events bumps `VERSION`, and the runner rebuilds it from the log
/// into a shadow schema while the old one keeps serving, then moves the new
/// tables in, in one transaction. The tables, views and sequences `create`
/// made are the ones the runner drops when it swaps the model; other
/// objects (types, functions) belong outside the model's schema.
///
/// A projection is `Sync` because its async methods hold `&self` across
/// their awaits; its state is the database's, so that is rarely a burden.
///
/// ```
/// use annals_core::testkit::bank::AccountEvent;
/// use annals_projections::tokio_postgres::Transaction;
/// use annals_projections::{async_trait, Envelope, HandlerError, PostgresProjection};
///
/// struct Balances;
///
/// #[async_trait]
/// impl PostgresProjection for Balances {
///     type Events = AccountEvent;
///     const NAME: &'static str = "balances";
///
///     async fn create(&self, db: &Transaction<'_>) -> Result<(), HandlerError> {
///         db.batch_execute("CREATE TABLE balances (account TEXT PRIMARY KEY, cents BIGINT NOT NULL)")
///             .await?;
///         Ok(())
///     }
///
///     async fn handle(&mut self, db: &Transaction<'_>, event: &Envelope<AccountEvent>) -> Result<(), HandlerError> {
///         let change = match event.event {
///             AccountEvent::Opened { .. } => 0,
///             AccountEvent::Deposited { amount } => i64::try_from(amount)?,
///             AccountEvent::Withdrawn { amount } => -i64::try_from(amount)?,
///         };
///         db.execute(
///             "INSERT INTO balances VALUES ($1, $2)
///              ON CONFLICT (account) DO UPDATE SET cents = balances.cents + $2",
///             &[&event.stream_id.id(), &change],
///         )
///         .await?;
///         Ok(())
///     }
/// }
/// ```
#[cfg(feature = "postgres")]
#[async_trait]
pub trait PostgresProjection: Send + Sync + 'static {
    /// The events it reads; the runner pushes their filter into the store.
    type Events: EventSet;

    /// Its name: stable across deploys, since it keys the checkpoint. ASCII
    /// letters, digits, `_`, `-` and `.`; at most 64 bytes.
    const NAME: &'static str;

    /// The version of its tables and of what it makes of events. When the
    /// stored model was built by another version, the runner rebuilds it.
    const VERSION: u32 = 1;

    /// Creates the model's empty tables (and their indexes), unqualified:
    /// they go into the schema the runner sets.
    async fn create(&self, db: &tokio_postgres::Transaction<'_>) -> Result<(), HandlerError>;

    /// Applies one event to the model, inside the batch's transaction.
    ///
    /// It must not commit or roll back, and must not keep state outside
    /// the database that a rolled-back batch would leave behind: after a
    /// failure the batch is rolled back and part of it handled again.
    async fn handle(
        &mut self,
        db: &tokio_postgres::Transaction<'_>,
        event: &Envelope<Self::Events>,
    ) -> Result<(), HandlerError>;

    /// Applies a batch of events, in order, inside the batch's
    /// transaction. The default calls [`handle`](PostgresProjection::handle)
    /// for each; override it to work on the batch as a whole (one
    /// multi-row statement rather than one per event, say). On a failure,
    /// say which event failed: the batch is rolled back and the events
    /// before it are handled again.
    async fn handle_batch(
        &mut self,
        db: &tokio_postgres::Transaction<'_>,
        events: &[Envelope<Self::Events>],
    ) -> Result<(), BatchFailure> {
        for (index, event) in events.iter().enumerate() {
            self.handle(db, event)
                .await
                .map_err(|error| BatchFailure { index, error })?;
        }
        Ok(())
    }

    /// What the runner does when `handle` fails or panics.
    fn on_failure(&self) -> FailurePolicy {
        FailurePolicy::Stop
    }

    /// What the runner does with an event of a type the projection's event
    /// set does not know, inside a category it reads.
    fn on_unknown_event(&self) -> UnknownEvents {
        UnknownEvents::Fail
    }
}

/// Which event of a batch a handler failed on, and why.
#[derive(Debug)]
pub struct BatchFailure {
    /// The index of the event in the batch.
    pub index: usize,
    /// What went wrong.
    pub error: HandlerError,
}

/// A projection into anything else (a view in memory, a cache, a search
/// index), updated at least once.
///
/// The runner calls [`handle`](Projection::handle) for each event of a
/// batch, then [`flush`](Projection::flush), then saves the checkpoint in
/// the event store. A crash between the two hands the batch to the
/// projection again: the event's position is the key to dedupe on.
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::{Arc, Mutex};
///
/// use annals_core::testkit::bank::AccountEvent;
/// use annals_projections::{Envelope, HandlerError, Projection};
///
/// /// How many events each account has had, in memory.
/// #[derive(Default)]
/// struct Activity(Arc<Mutex<HashMap<String, u64>>>);
///
/// #[async_trait::async_trait]
/// impl Projection for Activity {
///     type Events = AccountEvent;
///     const NAME: &'static str = "activity";
///     const IN_MEMORY: bool = true;
///
///     async fn handle(&mut self, event: &Envelope<AccountEvent>) -> Result<(), HandlerError> {
///         *self.0.lock().unwrap().entry(event.stream_id.id().to_owned()).or_default() += 1;
///         Ok(())
///     }
///
///     async fn reset(&mut self) -> Result<(), HandlerError> {
///         self.0.lock().unwrap().clear();
///         Ok(())
///     }
/// }
/// ```
#[async_trait]
pub trait Projection: Send + 'static {
    /// The events it reads; the runner pushes their filter into the store.
    type Events: EventSet;

    /// Its name: stable across deploys, since it keys the checkpoint. ASCII
    /// letters, digits, `_`, `-` and `.`; at most 64 bytes.
    const NAME: &'static str;

    /// The version of what it makes of events. When the stored checkpoint
    /// was saved by another version, the runner resets the projection and
    /// replays the log.
    const VERSION: u32 = 1;

    /// Whether the projection's state lives in this process's memory. Such
    /// a projection starts empty, so it replays the log from the start each
    /// time the runner starts, and its checkpoint is never stored.
    const IN_MEMORY: bool = false;

    /// Handles one event. May see an event again after a crash.
    async fn handle(&mut self, event: &Envelope<Self::Events>) -> Result<(), HandlerError>;

    /// Called after each batch, before the checkpoint moves past it: the
    /// place to write what `handle` buffered.
    async fn flush(&mut self) -> Result<(), HandlerError> {
        Ok(())
    }

    /// Forgets everything, before a rebuild replays the log.
    async fn reset(&mut self) -> Result<(), HandlerError>;

    /// What the runner does when `handle` fails or panics.
    fn on_failure(&self) -> FailurePolicy {
        FailurePolicy::Stop
    }

    /// What the runner does with an event of a type the projection's event
    /// set does not know, inside a category it reads.
    fn on_unknown_event(&self) -> UnknownEvents {
        UnknownEvents::Fail
    }
}

/// What the runner does when a handler fails on an event (an error, a
/// panic, or an event that does not decode). Whatever the choice, the
/// checkpoint never moves past an event that was neither handled nor
/// recorded as skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailurePolicy {
    /// Stop the projection with its checkpoint just before the event, and
    /// report the failure to whoever waits on it. The default.
    Stop,
    /// Try the event again after a pause, up to `attempts` times in all,
    /// then stop.
    Retry {
        /// How many times to try the event, the first time included.
        attempts: u32,
        /// The pauses between attempts.
        backoff: Backoff,
    },
    /// Record the event as skipped (position, id, type and the error, never
    /// the payload), move the checkpoint past it, and go on. The skipped
    /// events are listed by [`Running::skipped_events`](crate::Running::skipped_events).
    SkipAndRecord,
}

/// Exponential backoff with full jitter: the pause before attempt `n + 1`
/// is a random duration between zero and `min(cap, base × 2ⁿ⁻¹)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The longest pause before the second attempt.
    pub base: Duration,
    /// No pause is longer than this.
    pub cap: Duration,
}

impl Default for Backoff {
    /// 100 ms, doubling up to 30 s.
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The longest pause after `failures` failures (1 or more).
    pub fn ceiling(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.base
            .checked_mul(1 << doublings)
            .map_or(self.cap, |d| d.min(self.cap))
    }

    /// The pause after `failures` failures, with `unit` a random number in
    /// `[0, 1)`.
    pub fn pause(&self, failures: u32, unit: f64) -> Duration {
        self.ceiling(failures).mul_f64(unit.clamp(0.0, 1.0))
    }
}

/// What the runner does with an event of a type the event set does not
/// know, inside a category the projection reads (written by newer code, or
/// of a type since removed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum UnknownEvents {
    /// Treat it as a failure, under the projection's failure policy. The
    /// default: an event is never dropped without anyone deciding so.
    #[default]
    Fail,
    /// Pass over it.
    Skip,
}
