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
    ProjectionState, Projections, RunError, StartError, WaitError,
};
use tokio_postgres::{Client, NoTls, Transaction};

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

/// The balances in the model.
async fn model_balances(db: &Client, schema: &Schema) -> BTreeMap<String, i64> {
    let rows = db
        .query(
            &format!("SELECT account, cents FROM \"{}\".balances", schema.name),
            &[],
        )
        .await
        .expect("balances");
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

/// The positions in the model's `seen` table, in order.
async fn model_seen(db: &Client, schema: &Schema) -> Vec<u64> {
    let rows = db
        .query(
            &format!(
                "SELECT position FROM \"{}\".seen ORDER BY position",
                schema.name
            ),
            &[],
        )
        .await
        .expect("seen");
    rows.iter()
        .map(|r| u64::try_from(r.get::<_, i64>(0)).expect("positive"))
        .collect()
}

/// Asserts that the model holds every event up to `head` once, and the
/// balances a clean fold of the log gives.
async fn assert_whole(db: &Client, schema: &Schema, store: &InMemoryStore, head: Position) {
    let all: Vec<u64> = (1..=head.0).collect();
    assert_eq!(model_seen(db, schema).await, all);
    assert_eq!(
        model_balances(db, schema).await,
        folded_balances(store).await
    );
}

/// The model's checkpoint row: its position and version.
async fn stored_checkpoint(db: &Client, schema: &Schema) -> (u64, i64) {
    let row = db
        .query_one(
            &format!(
                "SELECT position, version FROM \"{}\".annals_projections WHERE name = 'balances'",
                schema.name
            ),
            &[],
        )
        .await
        .expect("checkpoint");
    (
        u64::try_from(row.get::<_, i64>(0)).expect("positive"),
        row.get(1),
    )
}

/// The versions that built the model's rows, lowest and highest.
async fn built_by(db: &Client, schema: &Schema) -> (i64, i64) {
    let row = db
        .query_one(
            &format!(
                "SELECT MIN(built_by), MAX(built_by) FROM \"{}\".balances",
                schema.name
            ),
            &[],
        )
        .await
        .expect("built_by");
    (row.get(0), row.get(1))
}

/// Waits for the projection to fail, and returns why.
async fn failure_of(running: &annals_projections::Running) -> ProjectionFailure {
    loop {
        if let ProjectionState::Failed(failure) = running.status()[0].state.clone() {
            return failure;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
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

async fn build_v1(store: &InMemoryStore, url: &str, schema: &Schema) -> TestResult {
    let running = Projections::new(store.clone())
        .postgres(url, &schema.name, Balances::<1>::new())
        .start()?;
    running.wait_idle().await?;
    running.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_then_live_keeps_model_and_checkpoint_together() -> TestResult {
    let Some(given) = setup("catch_up_then_live_keeps_model_and_checkpoint_together").await? else {
        return Ok(());
    };
    let Setup {
        url,
        schema,
        db,
        store,
    } = given;
    let head = busy_bank(&store, 6, 250).await;

    let running = Projections::new(store.clone())
        .batch_size(40)
        .postgres(&url, &schema.name, Balances::<1>::new())
        .start()?;
    running.wait_for("balances", head).await?;
    assert_eq!(
        model_balances(&db, &schema).await,
        folded_balances(&store).await
    );
    assert_eq!(stored_checkpoint(&db, &schema).await, (head.0, 1));

    // Live: new commits reach the model, with the checkpoint.
    let later = record(&store, "2", AccountEvent::Deposited { amount: 5 }).await;
    running.wait_for("balances", later).await?;
    assert_whole(&db, &schema, &store, later).await;
    assert_eq!(stored_checkpoint(&db, &schema).await, (later.0, 1));
    running.stop().await;

    // A restart goes on from the checkpoint: nothing is applied twice
    // (the `seen` key would fail the batch).
    let last = busy_bank(&store, 2, 10).await;
    let running = Projections::new(store.clone())
        .postgres(&url, &schema.name, Balances::<1>::new())
        .start()?;
    running.wait_for("balances", last).await?;
    assert_eq!(
        model_seen(&db, &schema).await,
        (1..=last.0).collect::<Vec<_>>()
    );
    running.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_handler_leaves_model_and_checkpoint_as_they_were() -> TestResult {
    let Some(given) = setup("failing_handler_leaves_model_and_checkpoint_as_they_were").await?
    else {
        return Ok(());
    };
    let Setup {
        url,
        schema,
        db,
        store,
    } = given;
    busy_bank(&store, 3, 60).await;
    let unlucky = record(&store, "1", AccountEvent::Deposited { amount: UNLUCKY }).await;
    let head = busy_bank(&store, 3, 40).await;

    // One batch holds the whole log: the failure is in its middle.
    let switches = Switches::failing();
    let running = Projections::new(store.clone())
        .postgres(
            &url,
            &schema.name,
            Balances::<1>::with(switches.clone(), FailurePolicy::Stop),
        )
        .start()?;
    let failure = failure_of(&running).await;
    assert_eq!(failure.position(), Some(unlucky));
    running.stop().await;
    // The events before it are in, with the checkpoint; nothing after.
    let before: Vec<u64> = (1..unlucky.0).collect();
    assert_eq!(model_seen(&db, &schema).await, before);
    assert_eq!(stored_checkpoint(&db, &schema).await, (unlucky.0 - 1, 1));

    // Fixed and started again: each event exactly once.
    switches.fail.store(false, Ordering::SeqCst);
    let running = Projections::new(store.clone())
        .postgres(
            &url,
            &schema.name,
            Balances::<1>::with(switches, FailurePolicy::Stop),
        )
        .start()?;
    running.wait_for("balances", head).await?;
    assert_whole(&db, &schema, &store, head).await;
    assert_eq!(stored_checkpoint(&db, &schema).await, (head.0, 1));
    running.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_handler_fails_at_its_event_and_keeps_nothing_partial() -> TestResult {
    let Some(given) =
        setup("panicking_handler_fails_at_its_event_and_keeps_nothing_partial").await?
    else {
        return Ok(());
    };
    let Setup {
        url,
        schema,
        db,
        store,
    } = given;
    busy_bank(&store, 2, 30).await;
    let cursed = record(&store, "0", AccountEvent::Deposited { amount: CURSED }).await;
    busy_bank(&store, 2, 30).await;

    let running = Projections::new(store.clone())
        .postgres(
            &url,
            &schema.name,
            Balances::<1>::with(Switches::panicking(), FailurePolicy::Stop),
        )
        .start()?;
    let failure = failure_of(&running).await;
    assert_eq!(failure.position(), Some(cursed));
    assert!(
        failure.to_string().contains("sixty-six is cursed"),
        "{failure}"
    );
    running.stop().await;
    assert_eq!(
        model_seen(&db, &schema).await,
        (1..cursed.0).collect::<Vec<_>>()
    );
    assert_eq!(stored_checkpoint(&db, &schema).await, (cursed.0 - 1, 1));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipped_event_is_recorded_with_the_checkpoint() -> TestResult {
    let Some(given) = setup("skipped_event_is_recorded_with_the_checkpoint").await? else {
        return Ok(());
    };
    let Setup {
        url,
        schema,
        db,
        store,
    } = given;
    busy_bank(&store, 2, 20).await;
    let unlucky = record(&store, "1", AccountEvent::Deposited { amount: UNLUCKY }).await;
    let head = busy_bank(&store, 2, 20).await;

    let running = Projections::new(store.clone())
        .postgres(
            &url,
            &schema.name,
            Balances::<1>::with(Switches::failing(), FailurePolicy::SkipAndRecord),
        )
        .start()?;
    running.wait_for("balances", head).await?;
    let skipped = running.skipped_events("balances").await?;
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].position, unlucky);
    assert_eq!(skipped[0].error, "thirteen is unlucky");
    let handled: Vec<u64> = (1..=head.0).filter(|p| *p != unlucky.0).collect();
    assert_eq!(model_seen(&db, &schema).await, handled);
    assert_eq!(stored_checkpoint(&db, &schema).await, (head.0, 1));
    running.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_change_rebuilds_in_a_shadow_and_readers_see_only_whole_models() -> TestResult {
    let Some(given) =
        setup("version_change_rebuilds_in_a_shadow_and_readers_see_only_whole_models").await?
    else {
        return Ok(());
    };
    let Setup {
        url,
        schema,
        db,
        store,
    } = given;
    let head = busy_bank(&store, 20, 1_500).await;
    build_v1(&store, &url, &schema).await?;
    let expected = model_balances(&db, &schema).await;
    let total: i64 = expected.values().sum();

    // A reader on a connection of its own, reading through the swap.
    let done = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let reader = {
        let reader_db = connect(&url).await?;
        let (name, done, reads) = (schema.name.clone(), done.clone(), reads.clone());
        tokio::spawn(async move {
            let query = format!(
                "SELECT COUNT(*), SUM(cents)::BIGINT, MIN(built_by), MAX(built_by) FROM \"{name}\".balances"
            );
            let totals = format!("SELECT accounts, cents FROM \"{name}\".totals");
            while !done.load(Ordering::SeqCst) {
                let row = reader_db.query_one(&query, &[]).await?;
                let (rows, sum, low, high): (i64, i64, i64, i64) =
                    (row.get(0), row.get(1), row.get(2), row.get(3));
                assert_eq!((rows, sum), (20, total), "a reader saw a partial model");
                assert_eq!(low, high, "a reader saw rows of two versions");
                let row = reader_db.query_one(&totals, &[]).await?;
                assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (20, total));
                reads.fetch_add(1, Ordering::SeqCst);
            }
            Ok::<_, tokio_postgres::Error>(())
        })
    };
    // The reads counted at the rebuild's first and latest batch.
    let during = Arc::new(Mutex::new((None, 0)));
    let (seen, counted) = (during.clone(), reads.clone());
    let running = Projections::new(store.clone())
        .batch_size(25)
        .on_rebuild_progress(move |_| {
            let now = counted.load(Ordering::SeqCst);
            let mut seen = seen.lock().expect("lock");
            seen.0.get_or_insert(now);
            seen.1 = now;
        })
        .postgres(&url, &schema.name, Balances::<2>::new())
        .start()?;
    running.wait_idle().await?;
    done.store(true, Ordering::SeqCst);
    reader.await??;
    let (first, latest) = *during.lock().expect("lock");
    let first = first.ok_or("no rebuild progress was reported")?;
    assert!(latest > first, "the reader did not read during the rebuild");
    assert_eq!(built_by(&db, &schema).await, (2, 2));
    assert_eq!(model_balances(&db, &schema).await, expected);
    assert_eq!(
        model_seen(&db, &schema).await,
        (1..=head.0).collect::<Vec<_>>()
    );
    assert_eq!(stored_checkpoint(&db, &schema).await, (head.0, 2));
    assert!(
        schema.shadows(&db).await?.is_empty(),
        "the shadow schema is dropped by the swap"
    );
    running.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_rebuild_leaves_the_old_model_serving_and_goes_on_later() -> TestResult {
    let Some(given) =
        setup("interrupted_rebuild_leaves_the_old_model_serving_and_goes_on_later").await?
    else {
        return Ok(());
    };
    let Setup {
        url,
        schema,
        db,
        store,
    } = given;
    busy_bank(&store, 5, 300).await;
    let unlucky = record(&store, "1", AccountEvent::Deposited { amount: UNLUCKY }).await;
    let head = busy_bank(&store, 5, 100).await;
    build_v1(&store, &url, &schema).await?;
    let old = model_balances(&db, &schema).await;

    // The new version fails half-way through its rebuild.
    let switches = Switches::failing();
    let running = Projections::new(store.clone())
        .batch_size(50)
        .postgres(
            &url,
            &schema.name,
            Balances::<2>::with(switches.clone(), FailurePolicy::Stop),
        )
        .start()?;
    let failure = failure_of(&running).await;
    assert_eq!(failure.position(), Some(unlucky));
    running.stop().await;
    assert_eq!(
        built_by(&db, &schema).await,
        (1, 1),
        "the old model still serves"
    );
    assert_eq!(model_balances(&db, &schema).await, old);
    assert_eq!(stored_checkpoint(&db, &schema).await, (head.0, 1));
    assert_eq!(schema.shadows(&db).await?.len(), 1, "the shadow is kept");

    // Fixed, the rebuild goes on from the shadow's checkpoint.
    switches.fail.store(false, Ordering::SeqCst);
    let totals = Arc::new(Mutex::new(Vec::new()));
    let reported = totals.clone();
    let running = Projections::new(store.clone())
        .batch_size(50)
        .on_rebuild_progress(move |p| reported.lock().expect("lock").push(p.total))
        .postgres(
            &url,
            &schema.name,
            Balances::<2>::with(switches, FailurePolicy::Stop),
        )
        .start()?;
    running.wait_idle().await?;
    let first_total = totals.lock().expect("lock").first().copied();
    assert_eq!(
        first_total,
        Some(head.0 - (unlucky.0 - 1)),
        "it did not go on where it stopped"
    );
    assert_eq!(built_by(&db, &schema).await, (2, 2));
    assert_whole(&db, &schema, &store, head).await;
    assert!(schema.shadows(&db).await?.is_empty());
    running.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_on_request_swaps_in_a_model_equal_to_the_fold() -> TestResult {
    let Some(given) = setup("rebuild_on_request_swaps_in_a_model_equal_to_the_fold").await? else {
        return Ok(());
    };
    let Setup {
        url,
        schema,
        db,
        store,
    } = given;
    busy_bank(&store, 4, 120).await;
    let running = Projections::new(store.clone())
        .batch_size(16)
        .postgres(&url, &schema.name, Balances::<1>::new())
        .start()?;
    running.wait_idle().await?;
    running.rebuild("balances").await?;
    assert_eq!(
        model_balances(&db, &schema).await,
        folded_balances(&store).await
    );
    assert_eq!(
        model_seen(&db, &schema).await,
        (1..=124).collect::<Vec<_>>()
    );
    // Still live after the swap.
    let position = record(&store, "2", AccountEvent::Deposited { amount: 3 }).await;
    running.wait_for("balances", position).await?;
    assert_eq!(model_seen(&db, &schema).await.len() as u64, position.0);
    assert_eq!(stored_checkpoint(&db, &schema).await, (position.0, 1));
    running.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runners_of_one_projection_never_apply_an_event_twice() -> TestResult {
    let Some(given) = setup("two_runners_of_one_projection_never_apply_an_event_twice").await?
    else {
        return Ok(());
    };
    let Setup {
        url,
        schema,
        db,
        store,
    } = given;
    busy_bank(&store, 3, 200).await;
    // Two instances of an application, each running the projection.
    let first = Projections::new(store.clone())
        .batch_size(5)
        .postgres(&url, &schema.name, Tally)
        .start()?;
    let second = Projections::new(store.clone())
        .batch_size(5)
        .postgres(&url, &schema.name, Tally)
        .start()?;
    let head = busy_bank(&store, 3, 100).await;
    let (a, b) = tokio::join!(
        first.wait_for_within("tally", head, Duration::from_secs(20)),
        second.wait_for_within("tally", head, Duration::from_secs(20)),
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
    let row = db
        .query_one(
            &format!(
                "SELECT COUNT(*), COUNT(DISTINCT position) FROM \"{}\".tally",
                schema.name
            ),
            &[],
        )
        .await?;
    let (rows, distinct): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!(rows, distinct, "an event was applied twice");
    assert_eq!(u64::try_from(rows)?, head.0);
    first.stop().await;
    second.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_fails_with_timeout() -> TestResult {
    let Some(given) = setup("statement_timeout_fails_with_timeout").await? else {
        return Ok(());
    };
    let Setup {
        url, schema, store, ..
    } = given;
    busy_bank(&store, 1, 3).await;
    build_v1(&store, &url, &schema).await?;

    // Another session holds the checkpoint row; the runner's statements
    // give up after 100 ms.
    let mut holder = connect(&url).await?;
    let held = holder.transaction().await?;
    held.execute(
        &format!(
            "SELECT 1 FROM \"{}\".annals_projections WHERE name = 'balances' FOR UPDATE",
            schema.name
        ),
        &[],
    )
    .await?;
    let impatient = format!("{url}?options=-c%20statement_timeout%3D100");
    let position = record(&store, "0", AccountEvent::Deposited { amount: 1 }).await;
    let running = Projections::new(store.clone())
        .postgres(&impatient, &schema.name, Balances::<1>::new())
        .start()?;
    let waited = running
        .wait_for_within("balances", position, Duration::from_secs(20))
        .await;
    let Err(WaitError::Failed(failure)) = waited else {
        panic!("expected a failure, got {waited:?}");
    };
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
    let running = Projections::new(store.clone())
        .postgres(
            "postgres://postgres@127.0.0.1:1/test?connect_timeout=5",
            "read_models",
            Balances::<1>::new(),
        )
        .start()?;
    let waited = running
        .wait_for_within("balances", position, Duration::from_secs(20))
        .await;
    let Err(WaitError::Failed(failure)) = waited else {
        panic!("expected a failure, got {waited:?}");
    };
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
        let started = Projections::new(InMemoryStore::new())
            .postgres(
                "postgres://postgres@127.0.0.1/test",
                bad,
                Balances::<1>::new(),
            )
            .start();
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
    let started = Projections::new(InMemoryStore::new())
        .postgres(
            "postgres://postgres@127.0.0.1:notaport/test",
            "read_models",
            Balances::<1>::new(),
        )
        .start();
    match started {
        Err(StartError::InvalidConnectionString { projection, .. }) => {
            assert_eq!(projection, "balances");
        }
        Err(other) => panic!("expected InvalidConnectionString, got {other}"),
        Ok(_) => panic!("a bad connection string was accepted"),
    }
}
