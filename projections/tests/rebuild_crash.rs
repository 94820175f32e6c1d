//! Kill -9 the process rebuilding a read model for a new version, over and
//! over: after each kill the model's file holds either the whole old model
//! or the whole new one (never a mix, never part of one), and a last run
//! finishes the rebuild from the shadow's own checkpoint.
//!
//! The child is this test binary run again with `ANNALS_REBUILD_CHILD` set
//! to the test's directory: it starts version 2 or 3 of a balances model
//! (each cycle another than the last, so that each cycle rebuilds) over
//! the version 1 the parent built, in small batches, so that the rebuild
//! into the shadow database takes a while and the kill lands in it, or in
//! the swap. `ANNALS_TEST_SEED` repeats a run's choices.

mod common;

use std::collections::BTreeMap;
use std::error::Error;
use std::path::Path;
use std::time::Duration;

use annals_core::testkit::bank::AccountEvent;
use annals_core::{EventStore, ExpectedVersion, Metadata, NewEvent, Position, ReadAll, StreamId};
use annals_projections::{Envelope, HandlerError, Projections, SqliteProjection};
use annals_sqlite::SqliteStore;
use common::{expect_line, kill_at_random_moment, say, seed, spawn_child, Dice, SEED};
use rusqlite::{params, Connection, Transaction};

const TEST: &str = "rebuild_killed_at_any_moment_leaves_a_whole_model_and_finishes_later";
const CHILD: &str = "ANNALS_REBUILD_CHILD";
const CHILD_FINISH: &str = "ANNALS_REBUILD_FINISH";
const CHILD_VERSION: &str = "ANNALS_REBUILD_VERSION";
const LOG: &str = "log.db";
const MODEL: &str = "balances.db";
const EVENTS: u64 = 6_000;
const STREAMS: u64 = 40;
const CYCLES: u64 = 12;

/// A balance per account; each row says which version wrote it.
struct Balances<const V: u32>;

impl<const V: u32> SqliteProjection for Balances<V> {
    type Events = AccountEvent;
    const NAME: &'static str = "balances";
    const VERSION: u32 = V;

    fn create(&self, db: &Transaction<'_>) -> Result<(), HandlerError> {
        db.execute_batch(
            "CREATE TABLE balances (account TEXT PRIMARY KEY, cents INTEGER NOT NULL, built_by INTEGER NOT NULL)",
        )?;
        Ok(())
    }

    fn handle(
        &mut self,
        db: &Transaction<'_>,
        event: &Envelope<AccountEvent>,
    ) -> Result<(), HandlerError> {
        let cents = match event.event {
            AccountEvent::Deposited { amount } => i64::try_from(amount)?,
            _ => 0,
        };
        db.execute(
            "INSERT INTO balances VALUES (?1, ?2, ?3)
             ON CONFLICT (account) DO UPDATE SET cents = cents + ?2",
            params![event.stream_id.id(), cents, V],
        )?;
        Ok(())
    }
}

/// A model's balances by account, and the versions that wrote them.
type Model = (BTreeMap<String, i64>, Vec<i64>);

/// The model's rows, and the versions that wrote them.
fn model(path: &Path) -> Result<Model, Box<dyn Error>> {
    let db = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut rows = db.prepare("SELECT account, cents, built_by FROM balances")?;
    let mut balances = BTreeMap::new();
    let mut versions = Vec::new();
    for row in rows.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?)))? {
        let (account, cents, version) = row?;
        balances.insert(account, cents);
        versions.push(version);
    }
    versions.sort_unstable();
    versions.dedup();
    Ok((balances, versions))
}

/// The balances a fold of the whole log gives.
async fn folded(store: &SqliteStore) -> Result<BTreeMap<String, i64>, Box<dyn Error>> {
    let mut balances = BTreeMap::new();
    let mut after = Position::START;
    loop {
        let page = store.read_all(ReadAll::after(after)).await?;
        for event in &page.events {
            let cents = match event.decode::<AccountEvent>()? {
                AccountEvent::Deposited { amount } => i64::try_from(amount)?,
                _ => 0,
            };
            *balances.entry(event.stream_id.id().to_owned()).or_insert(0) += cents;
        }
        if page.events.is_empty() {
            return Ok(balances);
        }
        after = page.read_through;
    }
}

/// Runs version 2 until killed, or (finishing) until idle.
fn child(dir: &Path) -> Result<(), Box<dyn Error>> {
    let finish = std::env::var(CHILD_FINISH).is_ok();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = SqliteStore::open(dir.join(LOG)).await?;
        let projections = Projections::new(store).batch_size(10);
        let model = dir.join(MODEL);
        let running = match std::env::var(CHILD_VERSION)?.as_str() {
            "2" => projections.sqlite(model, Balances::<2>),
            _ => projections.sqlite(model, Balances::<3>),
        }
        .start()?;
        say("READY");
        if finish {
            running.wait_idle_within(Duration::from_secs(60)).await?;
            say("IDLE");
        } else {
            // Until killed; a failure is said at once.
            if let Err(e) = running
                .wait_for_within("balances", Position(u64::MAX), Duration::from_secs(60))
                .await
            {
                say(&format!("FAILED {e}"));
            }
        }
        running.stop().await;
        Ok::<_, Box<dyn Error>>(())
    })
}

#[test]
fn rebuild_killed_at_any_moment_leaves_a_whole_model_and_finishes_later(
) -> Result<(), Box<dyn Error>> {
    if let Ok(dir) = std::env::var(CHILD) {
        return child(Path::new(&dir));
    }
    let seed = seed();
    println!("seed {seed} (set {SEED} to repeat)");
    let mut dice = Dice::new(seed);
    let dir = tempfile::tempdir()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let store = runtime.block_on(SqliteStore::open(dir.path().join(LOG)))?;
    runtime.block_on(async {
        for chunk in 0..EVENTS / 100 {
            let mut request = annals_core::AppendRequest::new();
            for stream in 0..STREAMS {
                let events: Vec<NewEvent> = (0..100 / STREAMS + 1)
                    .map(|n| {
                        let event = AccountEvent::Deposited {
                            amount: chunk * 7 + n + stream,
                        };
                        NewEvent::from_domain(&event, Metadata::default())
                    })
                    .collect::<Result<_, _>>()?;
                request = request.stream(
                    StreamId::new(format!("account-{stream}"))?,
                    ExpectedVersion::Any,
                    events,
                );
            }
            store.append(request).await?;
        }
        // Version 1, built in full before the new version is deployed.
        let running = Projections::new(store.clone())
            .sqlite(dir.path().join(MODEL), Balances::<1>)
            .start()?;
        running.wait_idle_within(Duration::from_secs(60)).await?;
        running.stop().await;
        Ok::<_, Box<dyn Error>>(())
    })?;
    let expected = runtime.block_on(folded(&store))?;
    let env = |finish: bool, version: u64| {
        let mut envs = vec![
            (CHILD, dir.path().display().to_string()),
            (CHILD_VERSION, version.to_string()),
        ];
        if finish {
            envs.push((CHILD_FINISH, "1".to_owned()));
        }
        envs
    };
    let (mut kept, mut swapped) = (0, 0);
    for cycle in 0..CYCLES {
        let (mut child, lines) = spawn_child(TEST, &env(false, 2 + cycle % 2))?;
        kill_at_random_moment(
            &mut child,
            &lines,
            &mut dice,
            250,
            &format!("cycle {cycle} (seed {seed})"),
        )?;
        let (balances, versions) = model(&dir.path().join(MODEL))?;
        assert_eq!(
            versions.len(),
            1,
            "cycle {cycle}: the model mixes versions {versions:?} (seed {seed})"
        );
        assert_eq!(
            balances, expected,
            "cycle {cycle}: the model is not whole (seed {seed})"
        );
        if versions == [i64::try_from(2 + cycle % 2)?] {
            swapped += 1;
        } else {
            kept += 1;
        }
    }
    let (mut child, lines) = spawn_child(TEST, &env(true, 2))?;
    expect_line(&lines, "IDLE", Duration::from_secs(60))?;
    child.wait()?;
    let (balances, versions) = model(&dir.path().join(MODEL))?;
    assert_eq!(versions, [2], "the rebuild did not finish (seed {seed})");
    assert_eq!(
        balances, expected,
        "the rebuilt model is not whole (seed {seed})"
    );
    let shadow = dir.path().join("balances.db.balances.rebuild");
    assert!(!shadow.exists(), "the shadow file is left behind");
    println!("kills that left the old model serving: {kept}; after the swap: {swapped}");
    Ok(())
}
