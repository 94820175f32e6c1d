//! Projections over a PostgreSQL log: catching up, following live commits
//! woken by notifications, checkpoints kept in the store, rebuilds,
//! failures returned by waits, and writers on several store instances of
//! one schema (as in several processes).

mod on_postgres;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use annals::postgres::PostgresStore;
use annals::projections::{
    async_trait, Envelope, FailurePolicy, HandlerError, Projection, ProjectionFailure,
    ProjectionState, Projections, RebuildProgress, WaitError,
};
use annals::{CheckpointStore, Position, RecordedEvent};
use annals_core::testkit::bank::AccountEvent;
use annals_core::testkit::read_log;
use on_postgres::{on_postgres, record, TestResult};

/// A runner's wait for a few hundred events on a local server.
const PATIENCE: Duration = Duration::from_secs(20);

/// What an at-least-once projection has done, kept by the test across
/// runners (as a cache outside the process would be).
#[derive(Clone, Default)]
struct Model {
    /// Every event handled, in the order handled: `(position, stream, version)`.
    handled: Arc<Mutex<Vec<(Position, String, u64)>>>,
    balances: Arc<Mutex<BTreeMap<String, i64>>>,
    resets: Arc<AtomicUsize>,
    /// A deposit of this amount fails while it is not zero.
    fail_on: Arc<AtomicU64>,
}

impl Model {
    fn handled(&self) -> Vec<(Position, String, u64)> {
        self.handled.lock().expect("not poisoned").clone()
    }

    fn positions(&self) -> Vec<Position> {
        self.handled().into_iter().map(|h| h.0).collect()
    }

    fn balances(&self) -> BTreeMap<String, i64> {
        self.balances.lock().expect("not poisoned").clone()
    }
}

/// A balance per account; `V` is its version.
struct Balances<const V: u32 = 1> {
    model: Model,
    policy: FailurePolicy,
}

impl<const V: u32> Balances<V> {
    fn new(model: &Model) -> Self {
        Balances {
            model: model.clone(),
            policy: FailurePolicy::Stop,
        }
    }
}

fn change(event: &AccountEvent) -> Result<i64, HandlerError> {
    Ok(match event {
        AccountEvent::Opened { .. } => 0,
        AccountEvent::Deposited { amount } => i64::try_from(*amount)?,
        AccountEvent::Withdrawn { amount } => -i64::try_from(*amount)?,
    })
}

#[async_trait]
impl<const V: u32> Projection for Balances<V> {
    type Events = AccountEvent;
    const NAME: &'static str = "balances";
    const VERSION: u32 = V;

    async fn handle(&mut self, event: &Envelope<AccountEvent>) -> Result<(), HandlerError> {
        let unlucky = self.model.fail_on.load(Ordering::SeqCst);
        if unlucky != 0 && event.event == (AccountEvent::Deposited { amount: unlucky }) {
            return Err("this amount is unlucky".into());
        }
        *self
            .model
            .balances
            .lock()
            .map_err(|_| "poisoned")?
            .entry(event.stream_id.id().to_owned())
            .or_default() += change(&event.event)?;
        self.model.handled.lock().map_err(|_| "poisoned")?.push((
            event.position,
            event.stream_id.to_string(),
            event.version,
        ));
        Ok(())
    }

    async fn reset(&mut self) -> Result<(), HandlerError> {
        self.model.resets.fetch_add(1, Ordering::SeqCst);
        self.model.balances.lock().map_err(|_| "poisoned")?.clear();
        self.model.handled.lock().map_err(|_| "poisoned")?.clear();
        Ok(())
    }

    fn on_failure(&self) -> FailurePolicy {
        self.policy.clone()
    }
}

/// Opens `accounts` accounts, then deposits `1..=40` into them in turn
/// (never `UNLUCKY`); returns the head.
async fn busy_bank(
    store: &PostgresStore,
    accounts: usize,
    deposits: usize,
) -> Result<Position, Box<dyn std::error::Error + Send + Sync>> {
    let mut head = Position::START;
    for a in 0..accounts {
        let owner = format!("owner {a}");
        head = record(store, &a.to_string(), &[AccountEvent::Opened { owner }]).await?;
    }
    for d in 0..deposits {
        let amount = u64::try_from(d % 40)? + 1;
        let amount = if amount == UNLUCKY {
            amount + 1
        } else {
            amount
        };
        let deposit = AccountEvent::Deposited { amount };
        head = record(store, &(d % accounts).to_string(), &[deposit]).await?;
    }
    Ok(head)
}

/// The deposit a failing projection cannot handle.
const UNLUCKY: u64 = 13;

/// The balances a clean fold of the log gives.
fn folded(log: &[RecordedEvent]) -> Result<BTreeMap<String, i64>, HandlerError> {
    let mut balances = BTreeMap::new();
    for event in log.iter().filter(|e| e.stream_id.category() == "account") {
        let decoded: AccountEvent = event.decode()?;
        *balances.entry(event.stream_id.id().to_owned()).or_default() += change(&decoded)?;
    }
    Ok(balances)
}

/// `(position, stream, version)` of every event in the log, in log order.
fn expected(log: &[RecordedEvent]) -> Vec<(Position, String, u64)> {
    log.iter()
        .map(|e| (e.position, e.stream_id.to_string(), e.version))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_catches_up_follows_live_commits_and_keeps_its_checkpoint_in_postgres(
) -> TestResult {
    on_postgres(
        "a_projection_catches_up_follows_live_commits_and_keeps_its_checkpoint_in_postgres",
        |pg| async move {
            // Neither the store nor the runner polls: only a notification
            // can wake the live projection.
            let store = pg.notified_store().await?;
            let caught_up = busy_bank(&store, 3, 60).await?;
            let model = Model::default();
            let running = Projections::new(store.clone())
                .batch_size(16)
                .poll_interval(Duration::from_secs(3600))
                .projection(Balances::<1>::new(&model))
                .start()?;
            running
                .wait_for_within("balances", caught_up, PATIENCE)
                .await?;
            assert_eq!(model.handled(), expected(&read_log(&store).await?));

            // Another process commits; the notification wakes the projection.
            let other = pg.same_schema(&store).await?;
            let live = record(&other, "0", &[AccountEvent::Deposited { amount: 500 }]).await?;
            let live = record(
                &other,
                "9",
                &[AccountEvent::Opened {
                    owner: "eve".into(),
                }],
            )
            .await?
            .max(live);
            running.wait_for_within("balances", live, PATIENCE).await?;
            let status = running.status_of("balances").ok_or("running")?;
            assert_eq!((status.checkpoint, status.lag), (live, 0));
            assert!(
                matches!(status.state, ProjectionState::Live),
                "{}",
                status.state
            );
            running.stop().await;
            let saved = other.load_checkpoint("balances").await?.ok_or("saved")?;
            assert_eq!(
                (saved.position, saved.version),
                (live, 1),
                "the checkpoint is in the database, for every process"
            );

            // A runner in the other process goes on from there, repeating nothing.
            let head = busy_bank(&store, 2, 10).await?;
            let running = Projections::new(other.clone())
                .projection(Balances::<1>::new(&model))
                .start()?;
            running.wait_for_within("balances", head, PATIENCE).await?;
            running.stop().await;
            let log = read_log(&store).await?;
            assert_eq!(model.handled(), expected(&log), "each event once, in order");
            assert_eq!(model.balances(), folded(&log)?);
            Ok(())
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_from_the_start_of_a_postgres_log_gives_the_same_model() -> TestResult {
    on_postgres(
        "rebuild_from_the_start_of_a_postgres_log_gives_the_same_model",
        |pg| async move {
            let store = pg.store().await?;
            let head = busy_bank(&store, 5, 150).await?;
            let model = Model::default();
            let running = Projections::new(store.clone())
                .batch_size(40)
                .projection(Balances::<1>::new(&model))
                .start()?;
            running.wait_for_within("balances", head, PATIENCE).await?;
            let live_built = model.balances();
            running.stop().await;

            // A new version rebuilds on start: reset, then the whole log again.
            let progress: Arc<Mutex<Vec<RebuildProgress>>> = Arc::default();
            let reported = progress.clone();
            let running = Projections::new(store.clone())
                .batch_size(40)
                .on_rebuild_progress(move |p| {
                    reported.lock().expect("not poisoned").push(p.clone())
                })
                .projection(Balances::<2>::new(&model))
                .start()?;
            running.wait_idle().await?;
            assert_eq!(model.resets.load(Ordering::SeqCst), 1);
            assert_eq!(model.balances(), live_built);
            let log = read_log(&store).await?;
            assert_eq!(model.handled(), expected(&log));
            let last = progress.lock().expect("not poisoned").last().cloned();
            let last = last.ok_or("the rebuild reported its progress")?;
            assert_eq!((last.done, last.total), (head.0, head.0));
            let saved = store.load_checkpoint("balances").await?.ok_or("saved")?;
            assert_eq!((saved.position, saved.version), (head, 2));

            // On request, too.
            running.rebuild("balances").await?;
            running.wait_for_within("balances", head, PATIENCE).await?;
            assert_eq!(model.resets.load(Ordering::SeqCst), 2);
            assert_eq!(model.balances(), live_built);
            assert_eq!(model.balances(), folded(&log)?);
            assert_eq!(model.handled(), expected(&log));
            running.stop().await;
            Ok(())
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_handler_is_returned_by_the_wait_and_the_postgres_checkpoint_stops_before_it(
) -> TestResult {
    on_postgres(
        "a_failing_handler_is_returned_by_the_wait_and_the_postgres_checkpoint_stops_before_it",
        |pg| async move {
            let store = pg.store().await?;
            busy_bank(&store, 1, 4).await?;
            let unlucky =
                record(&store, "0", &[AccountEvent::Deposited { amount: UNLUCKY }]).await?;
            let head = busy_bank(&store, 1, 4).await?;
            let model = Model::default();
            model.fail_on.store(UNLUCKY, Ordering::SeqCst);
            let running = Projections::new(store.clone())
                .projection(Balances::<1>::new(&model))
                .start()?;
            // The wait ends with the failure, long before its own bound.
            let failed = tokio::time::timeout(PATIENCE, running.wait_for("balances", head))
                .await?
                .expect_err("the unlucky deposit fails");
            let WaitError::Failed(ProjectionFailure::Event {
                position,
                event_type,
                error,
                ..
            }) = &failed
            else {
                panic!("not an event's failure: {failed:?}");
            };
            assert_eq!(
                (*position, event_type.as_str(), error.as_str()),
                (unlucky, "Deposited", "this amount is unlucky")
            );
            assert!(matches!(
                running.status_of("balances").ok_or("running")?.state,
                ProjectionState::Failed(_)
            ));
            running.stop().await;
            let saved = store.load_checkpoint("balances").await?.ok_or("saved")?;
            assert_eq!(saved.position, Position(unlucky.0 - 1));

            // Fixed, it goes on from just before the event.
            model.fail_on.store(0, Ordering::SeqCst);
            let running = Projections::new(store.clone())
                .projection(Balances::<1>::new(&model))
                .start()?;
            running.wait_for_within("balances", head, PATIENCE).await?;
            running.stop().await;
            assert_eq!(model.handled(), expected(&read_log(&store).await?));

            // Skipping instead: the event is recorded as skipped in the store.
            let skipping = Model::default();
            skipping.fail_on.store(UNLUCKY, Ordering::SeqCst);
            let mut projection = Balances::<1>::new(&skipping);
            projection.policy = FailurePolicy::SkipAndRecord;
            let fresh = pg.store().await?;
            record(&fresh, "0", &[AccountEvent::Deposited { amount: UNLUCKY }]).await?;
            let head = busy_bank(&fresh, 1, 3).await?;
            let running = Projections::new(fresh.clone())
                .projection(projection)
                .start()?;
            running.wait_for_within("balances", head, PATIENCE).await?;
            running.stop().await;
            let skipped = fresh.skipped_events("balances").await?;
            assert_eq!(skipped.len(), 1, "{skipped:?}");
            assert_eq!(
                (skipped[0].position, skipped[0].error.as_str()),
                (Position(1), "this amount is unlucky")
            );
            assert_eq!(skipping.positions().len(), 4, "the others handled");
            Ok(())
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_sees_every_event_once_in_order_with_writers_on_two_store_instances(
) -> TestResult {
    on_postgres(
        "a_projection_sees_every_event_once_in_order_with_writers_on_two_store_instances",
        |pg| async move {
            let reader = pg.store().await?;
            let writers = [
                pg.same_schema(&reader).await?,
                pg.same_schema(&reader).await?,
            ];
            let model = Model::default();
            let running = Projections::new(reader.clone())
                .batch_size(25)
                .projection(Balances::<1>::new(&model))
                .start()?;
            // Four writers, two per process, each on streams of its own, some
            // appends of several events: commits of both processes interleave
            // while the projection follows them.
            let mut tasks = tokio::task::JoinSet::new();
            for (w, store) in writers.iter().chain(writers.iter()).enumerate() {
                let store = store.clone();
                tasks.spawn(async move {
                    let mut last = Position::START;
                    for n in 0..40_u64 {
                        let account = format!("w{w}x{}", n % 4);
                        let events: Vec<AccountEvent> = if n < 4 {
                            vec![AccountEvent::Opened {
                                owner: account.clone(),
                            }]
                        } else {
                            (0..=n % 3)
                                .map(|k| AccountEvent::Deposited { amount: k + 1 })
                                .collect()
                        };
                        last = last.max(record(&store, &account, &events).await?);
                    }
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(last)
                });
            }
            let mut head = Position::START;
            while let Some(written) = tasks.join_next().await {
                head = head.max(written??);
            }
            running.wait_for_within("balances", head, PATIENCE).await?;
            running.stop().await;
            let log = read_log(&reader).await?;
            assert_eq!(log.last().map(|e| e.position), Some(head));
            let handled = model.handled();
            assert!(
                handled.windows(2).all(|w| w[0].0 < w[1].0),
                "positions handled in increasing order, none twice"
            );
            assert_eq!(handled, expected(&log), "every committed event, once");
            let mut versions: BTreeMap<&str, u64> = BTreeMap::new();
            for (_, stream, version) in &handled {
                let last = versions.entry(stream.as_str()).or_default();
                assert_eq!(*version, *last + 1, "{stream} in order");
                *last = *version;
            }
            assert_eq!(model.balances(), folded(&log)?);
            Ok(())
        },
    )
    .await
}
