#![cfg(feature = "postgres")]
//! Read models in PostgreSQL, exactly once: catch-up and live following,
//! the checkpoint committed with the model, rebuilds into a shadow schema
//! swapped in at once, and typed errors for bad settings and a missing
//! server.
//!
//! The tests that need a server read its URL from `ANNALS_PG_URL`
//! (`postgres://postgres@127.0.0.1:5432/test`, say) and skip, saying so,
//! when it is unset. Each one works in a schema of its own, dropped at its
//! end, pass or fail. The event log is the in-memory store: the model's
//! guarantee does not depend on where the log is kept.

#[path = "projections/fixtures.rs"]
#[allow(dead_code)]
mod fixtures;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use annals_core::testkit::bank::AccountEvent;
use annals_core::{BackendErrorKind, InMemoryStore, Position};
use annals_projections::{
    async_trait, Envelope, FailurePolicy, HandlerError, PostgresProjection, ProjectionFailure,
    ProjectionState, Projections, RunError, Running, StartError, WaitError,
};
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls, Row, Transaction};

use fixtures::{busy_bank, change, folded_balances, record, Switches, TestResult, CURSED, UNLUCKY};

/// The server's URL, or `None` (said on stderr) when there is none.
fn server(test: &str) -> Option<String> {
    match std::env::var("ANNALS_PG_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("ANNALS_PG_URL is not set: skipping {test}");
            None
        }
    }
}

async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// What a test that needs the server starts from: its URL, a schema of
/// its own, a client, and an empty log.
struct Setup {
    url: String,
    schema: Schema,
    db: Client,
    store: InMemoryStore,
}

/// The test's setup, or `None` (said on stderr) when there is no server.
async fn setup(test: &str) -> Result<Option<Setup>, tokio_postgres::Error> {
    let Some(url) = server(test) else {
        return Ok(None);
    };
    Ok(Some(Setup {
        schema: Schema::new(&url),
        db: connect(&url).await?,
        url,
        store: InMemoryStore::new(),
    }))
}

/// A schema of the test's own. Dropping it drops the schema and any
/// rebuild's shadow of it, even when the test failed.
struct Schema {
    url: String,
    name: String,
}

impl Schema {
    fn new(url: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "annals_test_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        Schema {
            url: url.to_owned(),
            name,
        }
    }

    /// The shadow schemas of rebuilds of this schema's models.
    async fn shadows(&self, client: &Client) -> Result<Vec<String>, tokio_postgres::Error> {
        let rows = client
            .query(
                "SELECT nspname::text FROM pg_namespace
                 WHERE obj_description(oid, 'pg_namespace') LIKE ('%of schema ' || $1::text)",
                &[&self.name],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        let cleaned = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let client = connect(&url).await?;
                let schema = Schema { url, name };
                let mut drops = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE;", schema.name);
                for shadow in schema.shadows(&client).await? {
                    drops.push_str(&format!("DROP SCHEMA IF EXISTS \"{shadow}\" CASCADE;"));
                }
                // Not dropped again when this copy goes.
                std::mem::forget(schema);
                client.batch_execute(&drops).await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        })
        .join();
        if !matches!(cleaned, Ok(Ok(()))) {
            eprintln!("could not drop test schema {}", self.name);
        }
    }
}

/// A balance per account and every position applied, whose primary key
/// fails a batch that applies an event twice; a view over the balances
/// and an identity column, so that a swap moves more than plain tables.
/// Each row records the version `V` that wrote it.
struct Balances<const V: u32> {
    switches: Switches,
    policy: FailurePolicy,
}

impl<const V: u32> Balances<V> {
    fn new() -> Self {
        Balances::with(Switches::default(), FailurePolicy::Stop)
    }

    fn with(switches: Switches, policy: FailurePolicy) -> Self {
        Balances { switches, policy }
    }
}

#[async_trait]
impl<const V: u32> PostgresProjection for Balances<V> {
    type Events = AccountEvent;
    const NAME: &'static str = "balances";
    const VERSION: u32 = V;

    async fn create(&self, db: &Transaction<'_>) -> Result<(), HandlerError> {
        db.batch_execute(
            "CREATE TABLE balances (account TEXT PRIMARY KEY, cents BIGINT NOT NULL, built_by BIGINT NOT NULL);
             CREATE INDEX balances_by_cents ON balances (cents);
             CREATE TABLE seen (
                 id BIGINT GENERATED ALWAYS AS IDENTITY,
                 position BIGINT PRIMARY KEY,
                 stream TEXT NOT NULL
             );
             CREATE VIEW totals AS SELECT COUNT(*) AS accounts, SUM(cents)::BIGINT AS cents FROM balances;",
        )
        .await?;
        Ok(())
    }

    async fn handle(
        &mut self,
        db: &Transaction<'_>,
        event: &Envelope<AccountEvent>,
    ) -> Result<(), HandlerError> {
        self.switches.check(&event.event)?;
        db.execute(
            "INSERT INTO balances VALUES ($1, $2, $3)
             ON CONFLICT (account) DO UPDATE SET cents = balances.cents + EXCLUDED.cents",
            &[&event.stream_id.id(), &change(&event.event)?, &i64::from(V)],
        )
        .await?;
        db.execute(
            "INSERT INTO seen (position, stream) VALUES ($1, $2)",
            &[&i64::try_from(event.position.0)?, &event.stream_id.as_str()],
        )
        .await?;
        Ok(())
    }

    fn on_failure(&self) -> FailurePolicy {
        self.policy.clone()
    }
}

/// Every position applied, with no key to refuse one applied twice.
struct Tally;

#[async_trait]
impl PostgresProjection for Tally {
    type Events = AccountEvent;
    const NAME: &'static str = "tally";

    async fn create(&self, db: &Transaction<'_>) -> Result<(), HandlerError> {
        db.batch_execute("CREATE TABLE tally (position BIGINT NOT NULL)")
            .await?;
        Ok(())
    }

    async fn handle(
        &mut self,
        db: &Transaction<'_>,
        event: &Envelope<AccountEvent>,
    ) -> Result<(), HandlerError> {
        db.execute(
            "INSERT INTO tally VALUES ($1)",
            &[&i64::try_from(event.position.0)?],
        )
        .await?;
        Ok(())
    }
}

impl Setup {
    /// Starts a runner of `projection` over the test's log and schema.
    fn start<P: PostgresProjection>(&self, projection: P) -> Result<Running, StartError> {
        self.start_with(|runner| runner, projection)
    }

    /// [`Setup::start`], with the runner's options set by `options` first.
    fn start_with<P: PostgresProjection>(
        &self,
        options: impl FnOnce(Projections<InMemoryStore>) -> Projections<InMemoryStore>,
        projection: P,
    ) -> Result<Running, StartError> {
        options(Projections::new(self.store.clone()))
            .postgres(&self.url, &self.schema.name, projection)
            .start()
    }

    /// Runs `projection` until it fails, stops it, and returns why.
    async fn failure_running<P: PostgresProjection>(
        &self,
        options: impl FnOnce(Projections<InMemoryStore>) -> Projections<InMemoryStore>,
        projection: P,
    ) -> Result<ProjectionFailure, StartError> {
        let running = self.start_with(options, projection)?;
        let failure = failure_of(&running).await;
        running.stop().await;
        Ok(failure)
    }

    /// Builds version 1 of the balances up to the head of the log.
    async fn build_v1(&self) -> TestResult {
        let running = self.start(Balances::<1>::new())?;
        running.wait_idle().await?;
        running.stop().await;
        Ok(())
    }

    /// `table` in the test's schema, quoted for SQL.
    fn table(&self, table: &str) -> String {
        format!("\"{}\".{table}", self.schema.name)
    }

    /// The one row `sql` reads.
    async fn read_one(&self, sql: &str) -> Row {
        self.db
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The balances in the model.
    async fn balances(&self) -> BTreeMap<String, i64> {
        let sql = format!("SELECT account, cents FROM {}", self.table("balances"));
        let rows = self.db.query(&sql, &[]).await.expect("balances");
        rows.iter().map(|r| (r.get(0), r.get(1))).collect()
    }

    /// The positions in the model's `seen` table, in order.
    async fn seen(&self) -> Vec<u64> {
        let sql = format!(
            "SELECT position FROM {} ORDER BY position",
            self.table("seen")
        );
        let rows = self.db.query(&sql, &[]).await.expect("seen");
        rows.iter()
            .map(|r| u64::try_from(r.get::<_, i64>(0)).expect("positive"))
            .collect()
    }

    /// The model's checkpoint row: its position and version.
    async fn checkpoint(&self) -> (u64, i64) {
        let row = self
            .read_one(&format!(
                "SELECT position, version FROM {} WHERE name = 'balances'",
                self.table("annals_projections")
            ))
            .await;
        (
            u64::try_from(row.get::<_, i64>(0)).expect("positive"),
            row.get(1),
        )
    }

    /// The versions that built the model's rows, lowest and highest.
    async fn built_by(&self) -> (i64, i64) {
        let row = self
            .read_one(&format!(
                "SELECT MIN(built_by), MAX(built_by) FROM {}",
                self.table("balances")
            ))
            .await;
        (row.get(0), row.get(1))
    }

    /// The shadow schemas that rebuilds of the test's models left.
    async fn shadows(&self) -> Result<Vec<String>, tokio_postgres::Error> {
        self.schema.shadows(&self.db).await
    }

    /// Asserts that the model holds every event up to `head` once, and the
    /// balances a clean fold of the log gives.
    async fn assert_whole(&self, head: Position) {
        assert_eq!(self.seen().await, up_to(head));
        assert_eq!(self.balances().await, folded_balances(&self.store).await);
    }

    /// Asserts that version 1 of the model is whole up to `head`, and its
    /// checkpoint there.
    async fn assert_caught_up(&self, head: Position) {
        self.assert_whole(head).await;
        assert_eq!(self.checkpoint().await, (head.0, 1));
    }

    /// Asserts that version 1 of the model holds every event before
    /// `failed`, with the checkpoint just before it, and nothing after.
    async fn assert_stopped_before(&self, failed: Position) {
        assert_eq!(self.seen().await, (1..failed.0).collect::<Vec<_>>());
        assert_eq!(self.checkpoint().await, (failed.0 - 1, 1));
    }

    /// Fills the log with `accounts` accounts and `deposits.0` deposits,
    /// one deposit of `amount` into `account`, then the accounts again and
    /// `deposits.1` deposits. Returns that deposit's position and the head.
    async fn busy_bank_around(
        &self,
        accounts: usize,
        deposits: (usize, usize),
        account: &str,
        amount: u64,
    ) -> (Position, Position) {
        busy_bank(&self.store, accounts, deposits.0).await;
        let deposit = record(&self.store, account, AccountEvent::Deposited { amount }).await;
        let head = busy_bank(&self.store, accounts, deposits.1).await;
        (deposit, head)
    }

    /// A reader on a connection of its own that reads the model until
    /// `done`, asserting that every read sees `accounts` rows of one version
    /// summing to `total`, and counting its reads in `reads`.
    async fn spawn_reader(
        &self,
        accounts: i64,
        total: i64,
        done: Arc<AtomicBool>,
        reads: Arc<AtomicU64>,
    ) -> Result<JoinHandle<Result<(), tokio_postgres::Error>>, tokio_postgres::Error> {
        let reader_db = connect(&self.url).await?;
        let query = format!(
            "SELECT COUNT(*), SUM(cents)::BIGINT, MIN(built_by), MAX(built_by) FROM {}",
            self.table("balances")
        );
        let totals = format!("SELECT accounts, cents FROM {}", self.table("totals"));
        Ok(tokio::spawn(async move {
            while !done.load(Ordering::SeqCst) {
                let row = reader_db.query_one(&query, &[]).await?;
                let (rows, sum, low, high): (i64, i64, i64, i64) =
                    (row.get(0), row.get(1), row.get(2), row.get(3));
                assert_eq!(
                    (rows, sum),
                    (accounts, total),
                    "a reader saw a partial model"
                );
                assert_eq!(low, high, "a reader saw rows of two versions");
                let row = reader_db.query_one(&totals, &[]).await?;
                assert_eq!(
                    (row.get::<_, i64>(0), row.get::<_, i64>(1)),
                    (accounts, total)
                );
                reads.fetch_add(1, Ordering::SeqCst);
            }
            Ok(())
        }))
    }
}

/// How long a test waits for a runner that may fail instead.
const PATIENCE: Duration = Duration::from_secs(20);

/// The positions from the first up to `head`.
fn up_to(head: Position) -> Vec<u64> {
    (1..=head.0).collect()
}

/// Starts a runner of version 1 of the balances at `url` and `schema`.
fn start_balances(store: &InMemoryStore, url: &str, schema: &str) -> Result<Running, StartError> {
    Projections::new(store.clone())
        .postgres(url, schema, Balances::<1>::new())
        .start()
}

/// Waits for the projection to fail, and returns why.
async fn failure_of(running: &Running) -> ProjectionFailure {
    loop {
        if let ProjectionState::Failed(failure) = running.status()[0].state.clone() {
            return failure;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Waits for the balances to reach `position`, which they must fail to
/// do, and returns why.
async fn failure_waiting_for(running: &Running, position: Position) -> ProjectionFailure {
    let waited = running
        .wait_for_within("balances", position, PATIENCE)
        .await;
    let Err(WaitError::Failed(failure)) = waited else {
        panic!("expected a failure, got {waited:?}");
    };
    failure
}

/// The kind of the backend error a projection failed with.
fn backend_kind(failure: &ProjectionFailure) -> Option<BackendErrorKind> {
    match failure {
        ProjectionFailure::Run(run) => match &**run {
            RunError::Backend { source, .. } => Some(source.kind),
            _ => None,
        },
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_then_live_keeps_model_and_checkpoint_together() -> TestResult {
    let Some(pg) = setup("catch_up_then_live_keeps_model_and_checkpoint_together").await? else {
        return Ok(());
    };
    let head = busy_bank(&pg.store, 6, 250).await;

    let running = pg.start_with(|r| r.batch_size(40), Balances::<1>::new())?;
    running.wait_for("balances", head).await?;
    assert_eq!(pg.balances().await, folded_balances(&pg.store).await);
    assert_eq!(pg.checkpoint().await, (head.0, 1));

    // Live: new commits reach the model, with the checkpoint.
    let later = record(&pg.store, "2", AccountEvent::Deposited { amount: 5 }).await;
    running.wait_for("balances", later).await?;
    pg.assert_caught_up(later).await;
    running.stop().await;

    // A restart goes on from the checkpoint: nothing is applied twice
    // (the `seen` key would fail the batch).
    let last = busy_bank(&pg.store, 2, 10).await;
    let running = pg.start(Balances::<1>::new())?;
    running.wait_for("balances", last).await?;
    assert_eq!(pg.seen().await, up_to(last));
    running.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_handler_leaves_model_and_checkpoint_as_they_were() -> TestResult {
    let Some(pg) = setup("failing_handler_leaves_model_and_checkpoint_as_they_were").await? else {
        return Ok(());
    };
    let (unlucky, head) = pg.busy_bank_around(3, (60, 40), "1", UNLUCKY).await;

    // One batch holds the whole log: the failure is in its middle.
    let switches = Switches::failing();
    let failing = Balances::<1>::with(switches.clone(), FailurePolicy::Stop);
    let failure = pg.failure_running(|r| r, failing).await?;
    assert_eq!(failure.position(), Some(unlucky));
    // The events before it are in, with the checkpoint; nothing after.
    pg.assert_stopped_before(unlucky).await;

    // Fixed and started again: each event exactly once.
    switches.fail.store(false, Ordering::SeqCst);
    let running = pg.start(Balances::<1>::with(switches, FailurePolicy::Stop))?;
    running.wait_for("balances", head).await?;
    pg.assert_caught_up(head).await;
    running.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_handler_fails_at_its_event_and_keeps_nothing_partial() -> TestResult {
    let Some(pg) = setup("panicking_handler_fails_at_its_event_and_keeps_nothing_partial").await?
    else {
        return Ok(());
    };
    let (cursed, _) = pg.busy_bank_around(2, (30, 30), "0", CURSED).await;

    let panicking = Balances::<1>::with(Switches::panicking(), FailurePolicy::Stop);
    let failure = pg.failure_running(|r| r, panicking).await?;
    assert_eq!(failure.position(), Some(cursed));
    assert!(
        failure.to_string().contains("sixty-six is cursed"),
        "{failure}"
    );
    pg.assert_stopped_before(cursed).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipped_event_is_recorded_with_the_checkpoint() -> TestResult {
    let Some(pg) = setup("skipped_event_is_recorded_with_the_checkpoint").await? else {
        return Ok(());
    };
    let (unlucky, head) = pg.busy_bank_around(2, (20, 20), "1", UNLUCKY).await;

    let skipping = Balances::<1>::with(Switches::failing(), FailurePolicy::SkipAndRecord);
    let running = pg.start(skipping)?;
    running.wait_for("balances", head).await?;
    let skipped = running.skipped_events("balances").await?;
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].position, unlucky);
    assert_eq!(skipped[0].error, "thirteen is unlucky");
    let handled: Vec<u64> = (1..=head.0).filter(|p| *p != unlucky.0).collect();
    assert_eq!(pg.seen().await, handled);
    assert_eq!(pg.checkpoint().await, (head.0, 1));
    running.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_change_rebuilds_in_a_shadow_and_readers_see_only_whole_models() -> TestResult {
    let Some(pg) =
        setup("version_change_rebuilds_in_a_shadow_and_readers_see_only_whole_models").await?
    else {
        return Ok(());
    };
    let head = busy_bank(&pg.store, 20, 1_500).await;
    pg.build_v1().await?;
    let expected = pg.balances().await;
    let total: i64 = expected.values().sum();

    // A reader on a connection of its own, reading through the swap.
    let done = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let reader = pg
        .spawn_reader(20, total, done.clone(), reads.clone())
        .await?;
    // The reads counted at the rebuild's first and latest batch.
    let during = Arc::new(Mutex::new((None, 0)));
    let (seen, counted) = (during.clone(), reads.clone());
    let running = pg.start_with(
        |r| {
            r.batch_size(25).on_rebuild_progress(move |_| {
                let now = counted.load(Ordering::SeqCst);
                let mut seen = seen.lock().expect("lock");
                seen.0.get_or_insert(now);
                seen.1 = now;
            })
        },
        Balances::<2>::new(),
    )?;
    running.wait_idle().await?;
    done.store(true, Ordering::SeqCst);
    reader.await??;
    let (first, latest) = *during.lock().expect("lock");
    let first = first.ok_or("no rebuild progress was reported")?;
    assert!(latest > first, "the reader did not read during the rebuild");
    assert_eq!(pg.built_by().await, (2, 2));
    assert_eq!(pg.balances().await, expected);
    assert_eq!(pg.seen().await, up_to(head));
    assert_eq!(pg.checkpoint().await, (head.0, 2));
    assert!(
        pg.shadows().await?.is_empty(),
        "the shadow schema is dropped by the swap"
    );
    running.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_rebuild_leaves_the_old_model_serving_and_goes_on_later() -> TestResult {
    let Some(pg) =
        setup("interrupted_rebuild_leaves_the_old_model_serving_and_goes_on_later").await?
    else {
        return Ok(());
    };
    let (unlucky, head) = pg.busy_bank_around(5, (300, 100), "1", UNLUCKY).await;
    pg.build_v1().await?;
    let old = pg.balances().await;

    // The new version fails half-way through its rebuild.
    let switches = Switches::failing();
    let failing = Balances::<2>::with(switches.clone(), FailurePolicy::Stop);
    let failure = pg.failure_running(|r| r.batch_size(50), failing).await?;
    assert_eq!(failure.position(), Some(unlucky));
    assert_eq!(pg.built_by().await, (1, 1), "the old model still serves");
    assert_eq!(pg.balances().await, old);
    assert_eq!(pg.checkpoint().await, (head.0, 1));
    assert_eq!(pg.shadows().await?.len(), 1, "the shadow is kept");

    // Fixed, the rebuild goes on from the shadow's checkpoint.
    switches.fail.store(false, Ordering::SeqCst);
    let totals = Arc::new(Mutex::new(Vec::new()));
    let reported = totals.clone();
    let running = pg.start_with(
        |r| {
            r.batch_size(50)
                .on_rebuild_progress(move |p| reported.lock().expect("lock").push(p.total))
        },
        Balances::<2>::with(switches, FailurePolicy::Stop),
    )?;
    running.wait_idle().await?;
    let first_total = totals.lock().expect("lock").first().copied();
    assert_eq!(
        first_total,
        Some(head.0 - (unlucky.0 - 1)),
        "it did not go on where it stopped"
    );
    assert_eq!(pg.built_by().await, (2, 2));
    pg.assert_whole(head).await;
    assert!(pg.shadows().await?.is_empty());
    running.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_on_request_swaps_in_a_model_equal_to_the_fold() -> TestResult {
    let Some(pg) = setup("rebuild_on_request_swaps_in_a_model_equal_to_the_fold").await? else {
        return Ok(());
    };
    busy_bank(&pg.store, 4, 120).await;
    let running = pg.start_with(|r| r.batch_size(16), Balances::<1>::new())?;
    running.wait_idle().await?;
    running.rebuild("balances").await?;
    assert_eq!(pg.balances().await, folded_balances(&pg.store).await);
    assert_eq!(pg.seen().await, (1..=124).collect::<Vec<_>>());
    // Still live after the swap.
    let position = record(&pg.store, "2", AccountEvent::Deposited { amount: 3 }).await;
    running.wait_for("balances", position).await?;
    assert_eq!(pg.seen().await.len() as u64, position.0);
    assert_eq!(pg.checkpoint().await, (position.0, 1));
    running.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runners_of_one_projection_never_apply_an_event_twice() -> TestResult {
    let Some(pg) = setup("two_runners_of_one_projection_never_apply_an_event_twice").await? else {
        return Ok(());
    };
    busy_bank(&pg.store, 3, 200).await;
    // Two instances of an application, each running the projection.
    let first = pg.start_with(|r| r.batch_size(5), Tally)?;
    let second = pg.start_with(|r| r.batch_size(5), Tally)?;
    let head = busy_bank(&pg.store, 3, 100).await;
    let (a, b) = tokio::join!(
        first.wait_for_within("tally", head, PATIENCE),
        second.wait_for_within("tally", head, PATIENCE),
    );
    // At most one gives up, refused with a typed error; the other gets
    // to the head.
    let failures: Vec<WaitError> = [a, b].into_iter().filter_map(Result::err).collect();
    assert!(failures.len() <= 1, "{failures:?}");
    for failure in &failures {
        let WaitError::Failed(failure) = failure else {
            panic!("expected a failure, got {failure:?}");
        };
        assert_eq!(
            backend_kind(failure),
            Some(BackendErrorKind::Busy),
            "{failure}"
        );
    }
    let row = pg
        .read_one(&format!(
            "SELECT COUNT(*), COUNT(DISTINCT position) FROM {}",
            pg.table("tally")
        ))
        .await;
    let (rows, distinct): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!(rows, distinct, "an event was applied twice");
    assert_eq!(u64::try_from(rows)?, head.0);
    first.stop().await;
    second.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_fails_with_timeout() -> TestResult {
    let Some(pg) = setup("statement_timeout_fails_with_timeout").await? else {
        return Ok(());
    };
    busy_bank(&pg.store, 1, 3).await;
    pg.build_v1().await?;

    // Another session holds the checkpoint row; the runner's statements
    // give up after 100 ms.
    let mut holder = connect(&pg.url).await?;
    let held = holder.transaction().await?;
    held.execute(
        &format!(
            "SELECT 1 FROM {} WHERE name = 'balances' FOR UPDATE",
            pg.table("annals_projections")
        ),
        &[],
    )
    .await?;
    let impatient = format!("{}?options=-c%20statement_timeout%3D100", pg.url);
    let position = record(&pg.store, "0", AccountEvent::Deposited { amount: 1 }).await;
    let running = start_balances(&pg.store, &impatient, &pg.schema.name)?;
    let failure = failure_waiting_for(&running, position).await;
    assert_eq!(
        backend_kind(&failure),
        Some(BackendErrorKind::Timeout),
        "{failure}"
    );
    held.rollback().await?;
    running.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_fails_with_unavailable() -> TestResult {
    let store = InMemoryStore::new();
    let position = busy_bank(&store, 1, 1).await;
    // Nothing listens on port 1: refused at once.
    let unreachable = "postgres://postgres@127.0.0.1:1/test?connect_timeout=5";
    let running = start_balances(&store, unreachable, "read_models")?;
    let failure = failure_waiting_for(&running, position).await;
    assert_eq!(
        backend_kind(&failure),
        Some(BackendErrorKind::Unavailable),
        "{failure}"
    );
    running.stop().await;
    Ok(())
}

#[tokio::test]
async fn invalid_schema_name_fails_with_invalid_schema() {
    for bad in [
        "",
        "Read_Models",
        "read-models",
        "models\"; DROP TABLE events; --",
        "1models",
        "pg_models",
        &"m".repeat(64),
    ] {
        let started = start_balances(
            &InMemoryStore::new(),
            "postgres://postgres@127.0.0.1/test",
            bad,
        );
        match started {
            Err(StartError::InvalidSchema {
                projection, schema, ..
            }) => {
                assert_eq!(projection, "balances");
                assert_eq!(schema, bad);
            }
            Err(other) => panic!("{bad:?}: expected InvalidSchema, got {other}"),
            Ok(_) => panic!("{bad:?} was accepted"),
        }
    }
}

#[tokio::test]
async fn invalid_connection_string_fails_with_invalid_connection_string() {
    let started = start_balances(
        &InMemoryStore::new(),
        "postgres://postgres@127.0.0.1:notaport/test",
        "read_models",
    );
    match started {
        Err(StartError::InvalidConnectionString { projection, .. }) => {
            assert_eq!(projection, "balances");
        }
        Err(other) => panic!("expected InvalidConnectionString, got {other}"),
        Ok(_) => panic!("a bad connection string was accepted"),
    }
}
