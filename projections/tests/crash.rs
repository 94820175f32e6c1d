//! Kill -9 the process running projections, over and over, while another
//! process appends: the SQLite read model applies each event exactly once,
//! the projection with its checkpoint in the store sees each at least once,
//! and both end at the head.
//!
//! The child is this test binary run again with `ANNALS_PROJECTION_CHILD`
//! set to the test's directory. It runs two projections of the same events:
//! "balances", an SQLite read model that keeps a sum per stream and each
//! position it applied in a table whose primary key refuses a second
//! application (the projection would then fail, and the test with it); and
//! "positions", a projection that appends each position it handles to a
//! plain file, where repeats are allowed but gaps are not. The parent
//! appends a fixed workload, a share per cycle, while it kills the child at
//! random moments (during its start, its catch-up, or while it follows
//! live commits) and starts it again. After each kill it checks that the
//! read model is exactly the log up to some position, never part of a
//! batch; at the end a last child reports that it is idle at the head,
//! and the models must equal a fold of the whole log.
//! `ANNALS_TEST_SEED` repeats a run's choices.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use annals_core::testkit::bank::AccountEvent;
use annals_core::{
    CheckpointStore, EventStore, ExpectedVersion, Metadata, NewEvent, Position, RecordedEvent,
    StreamId,
};
use annals_projections::{Envelope, HandlerError, Projection, Projections, SqliteProjection};
use annals_sqlite::SqliteStore;
use common::{
    expect_line, kill_at_random_moment, run_until_killed, say, seed, spawn_child, Dice, SEED,
};
use rusqlite::{params, Connection, Transaction};

const TEST: &str = "read_models_apply_every_event_once_across_sigkill_restarts";
const CHILD: &str = "ANNALS_PROJECTION_CHILD";
const CHILD_BATCH: &str = "ANNALS_PROJECTION_BATCH";
const CHILD_FINISH: &str = "ANNALS_PROJECTION_FINISH";

const LOG: &str = "log.db";
const MODEL: &str = "balances.db";
const POSITIONS: &str = "positions.txt";

const EVENTS: u64 = 2_000;
const CYCLES: u64 = 24;
const STREAMS: u64 = 16;

/// How an event changes its stream's balance, in cents.
fn change(event: &AccountEvent) -> Result<i64, std::num::TryFromIntError> {
    Ok(match event {
        AccountEvent::Opened { .. } => 0,
        AccountEvent::Deposited { amount } => i64::try_from(*amount)?,
        AccountEvent::Withdrawn { amount } => -i64::try_from(*amount)?,
    })
}

/// A balance per stream, and every position applied, exactly once.
struct Balances;

impl SqliteProjection for Balances {
    type Events = AccountEvent;
    const NAME: &'static str = "balances";

    fn create(&self, db: &Transaction<'_>) -> Result<(), HandlerError> {
        db.execute_batch(
            "CREATE TABLE balances (stream TEXT PRIMARY KEY, cents INTEGER NOT NULL) STRICT;
             CREATE TABLE seen (position INTEGER PRIMARY KEY) STRICT;",
        )?;
        Ok(())
    }

    fn handle(
        &mut self,
        db: &Transaction<'_>,
        event: &Envelope<AccountEvent>,
    ) -> Result<(), HandlerError> {
        // A second application of the event fails here, loudly.
        db.execute(
            "INSERT INTO seen (position) VALUES (?1)",
            [i64::try_from(event.position.0)?],
        )?;
        db.execute(
            "INSERT INTO balances VALUES (?1, ?2)
             ON CONFLICT (stream) DO UPDATE SET cents = cents + ?2",
            params![event.stream_id.as_str(), change(&event.event)?],
        )?;
        Ok(())
    }
}

/// Each position handled, a line per event in a plain file: at least once.
struct PositionsFile(std::fs::File);

impl PositionsFile {
    fn open(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(PositionsFile(file))
    }
}

#[async_trait::async_trait]
impl Projection for PositionsFile {
    type Events = AccountEvent;
    const NAME: &'static str = "positions";

    async fn handle(&mut self, event: &Envelope<AccountEvent>) -> Result<(), HandlerError> {
        // One write of the whole line, unbuffered: a kill never leaves half
        // a line, and what was written survives the process.
        self.0
            .write_all(format!("{}\n", event.position).as_bytes())?;
        self.0.flush()?;
        Ok(())
    }

    async fn reset(&mut self) -> Result<(), HandlerError> {
        self.0.set_len(0)?;
        Ok(())
    }
}

#[test]
fn read_models_apply_every_event_once_across_sigkill_restarts() -> Result<(), Box<dyn Error>> {
    if let Ok(dir) = std::env::var(CHILD) {
        return child(Path::new(&dir));
    }
    let seed = seed();
    println!("seed {seed} (set {SEED} to repeat)");
    let mut dice = Dice::new(seed);
    let dir = tempfile::tempdir()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let store = runtime.block_on(SqliteStore::open(dir.path().join(LOG)))?;
    let checkpoints = store.clone();
    let mut appended = 0;
    // A kill may cost the at-least-once projection the batch in flight.
    let mut redo_bound = 0;
    for cycle in 0..CYCLES {
        let batch = 1 + dice.roll(64);
        redo_bound += batch;
        let (mut child, lines) = spawn_child(
            TEST,
            &[
                (CHILD, dir.path().display().to_string()),
                (CHILD_BATCH, batch.to_string()),
            ],
        )?;
        let share = EVENTS * (cycle + 1) / CYCLES - EVENTS * cycle / CYCLES;
        let appending = runtime.spawn(append_share(store.clone(), dice.roll(u64::MAX), share));
        // While the child starts, catches up or follows live commits.
        kill_at_random_moment(
            &mut child,
            &lines,
            &mut dice,
            120,
            &format!("cycle {cycle} (seed {seed})"),
        )?;
        appended += runtime.block_on(appending)??;
        let log = runtime.block_on(annals_core::testkit::read_log(&store))?;
        let model = model_through(&dir.path().join(MODEL), &log, seed, cycle)?;
        let positions = runtime.block_on(checkpoints.load_checkpoint(PositionsFile::NAME))?;
        let positions = positions.map_or(Position::START, |c| c.position);
        let handled = handled_positions(&dir.path().join(POSITIONS))?;
        assert_at_least_once(&handled, positions, redo_bound, seed);
        println!(
            "cycle {cycle}: batches of {batch}, log at {}, balances at {model}, positions at {positions}",
            log.len()
        );
    }
    assert_eq!(appended, EVENTS, "the workload was not appended whole");

    // The last start: it must reach the head and say so.
    let (mut child, lines) = spawn_child(
        TEST,
        &[
            (CHILD, dir.path().display().to_string()),
            (CHILD_BATCH, (1 + dice.roll(64)).to_string()),
            (CHILD_FINISH, "1".to_owned()),
        ],
    )?;
    let idle = expect_line(&lines, "IDLE", Duration::from_secs(60))
        .map_err(|e| format!("the last child: {e} (seed {seed})"))?;
    assert!(
        child.wait()?.success(),
        "the last child failed (seed {seed})"
    );
    let reported: Vec<u64> = idle.split(' ').map(str::parse).collect::<Result<_, _>>()?;

    let log = runtime.block_on(annals_core::testkit::read_log(&store))?;
    annals_core::testkit::assert_no_gaps(&log, &format!("seed {seed}"));
    let head = runtime.block_on(store.head())?;
    assert_eq!(
        log.len() as u64,
        EVENTS,
        "the log holds other events than were appended"
    );
    assert_eq!(
        reported,
        [head.0, head.0, head.0],
        "the last child's head, balances and positions checkpoints (seed {seed})"
    );
    let model = model_through(&dir.path().join(MODEL), &log, seed, CYCLES)?;
    assert_eq!(
        model, head,
        "the balances model is not at the head (seed {seed})"
    );
    let positions = runtime.block_on(checkpoints.load_checkpoint(PositionsFile::NAME))?;
    assert_eq!(
        positions.map(|c| c.position),
        Some(head),
        "the positions checkpoint is not at the head (seed {seed})"
    );
    let handled = handled_positions(&dir.path().join(POSITIONS))?;
    assert_at_least_once(&handled, head, redo_bound, seed);
    println!(
        "{} positions handled by the at-least-once projection for {} events",
        handled.len(),
        log.len()
    );
    runtime.block_on(store.close());
    Ok(())
}

/// Appends `count` account events to random streams in batches of 1 to 8,
/// with short pauses so that they spread over the child's life; returns
/// how many were appended.
async fn append_share(store: SqliteStore, seed: u64, count: u64) -> Result<u64, String> {
    let mut dice = Dice::new(seed);
    let mut appended = 0;
    while appended < count {
        let here = (1 + dice.roll(8)).min(count - appended);
        let events = (0..here)
            .map(|_| {
                let amount = 1 + dice.roll(1_000);
                let event = if dice.roll(3) == 0 {
                    AccountEvent::Withdrawn { amount }
                } else {
                    AccountEvent::Deposited { amount }
                };
                NewEvent::from_domain(&event, Metadata::default())
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let stream =
            StreamId::new(format!("account-{}", dice.roll(STREAMS))).map_err(|e| e.to_string())?;
        store
            .append(annals_core::AppendRequest::to_stream(
                stream,
                ExpectedVersion::Any,
                events,
            ))
            .await
            .map_err(|e| e.to_string())?;
        appended += here;
        tokio::time::sleep(Duration::from_millis(dice.roll(4))).await;
    }
    Ok(appended)
}

/// The balance of each stream after the events of `log` up to `through`.
fn fold(log: &[RecordedEvent], through: Position) -> Result<BTreeMap<String, i64>, Box<dyn Error>> {
    let mut balances = BTreeMap::new();
    for stored in log.iter().take_while(|e| e.position <= through) {
        let event: AccountEvent = stored.decode()?;
        *balances
            .entry(stored.stream_id.as_str().to_owned())
            .or_default() += change(&event)?;
    }
    Ok(balances)
}

/// Checks that the balances model holds exactly the log up to a position,
/// each event once (no part of a batch, nothing twice), and returns that
/// position. Reads the model's own file, with no child running.
fn model_through(
    path: &Path,
    log: &[RecordedEvent],
    seed: u64,
    cycle: u64,
) -> Result<Position, Box<dyn Error>> {
    if !path.exists() {
        return Ok(Position::START);
    }
    let db = Connection::open(path)?;
    let has_tables: i64 = db.query_row(
        "SELECT count(*) FROM sqlite_master WHERE name IN ('seen', 'balances')",
        [],
        |r| r.get(0),
    )?;
    if has_tables < 2 {
        // Killed before the model's tables were made.
        return Ok(Position::START);
    }
    let seen: Vec<u64> = db
        .prepare("SELECT position FROM seen ORDER BY position")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let through = Position(seen.last().copied().unwrap_or(0));
    let expected: Vec<u64> = log
        .iter()
        .map(|e| e.position.0)
        .take_while(|p| *p <= through.0)
        .collect();
    assert_eq!(
        seen, expected,
        "cycle {cycle}: the model's positions are not the log up to {through} (seed {seed})"
    );
    let balances: BTreeMap<String, i64> = db
        .prepare("SELECT stream, cents FROM balances")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    assert_eq!(
        balances,
        fold(log, through)?,
        "cycle {cycle}: the balances differ from a fold of the log up to {through} (seed {seed})"
    );
    Ok(through)
}

/// The positions the at-least-once projection wrote, repeats included.
fn handled_positions(path: &Path) -> Result<Vec<u64>, Box<dyn Error>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path)?;
    Ok(text.lines().map(str::parse).collect::<Result<_, _>>()?)
}

/// Every position up to `checkpoint` was handled at least once, and
/// repeats stay within what the kills could cost.
fn assert_at_least_once(handled: &[u64], checkpoint: Position, redo_bound: u64, seed: u64) {
    let distinct: BTreeSet<u64> = handled.iter().copied().collect();
    let missing: Vec<u64> = (1..=checkpoint.0)
        .filter(|p| !distinct.contains(p))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "positions up to the checkpoint {checkpoint} never handled: {missing:?}... (seed {seed})"
    );
    let repeats = (handled.len() - distinct.len()) as u64;
    assert!(
        repeats <= redo_bound,
        "{repeats} repeats, more than the {redo_bound} the kills could cause (seed {seed})"
    );
}

/// The child: runs both projections until killed, or, told to finish,
/// until idle at the head, then says where they are and stops.
fn child(dir: &Path) -> Result<(), Box<dyn Error>> {
    let batch: usize = std::env::var(CHILD_BATCH)?.parse()?;
    let finish = std::env::var(CHILD_FINISH).is_ok();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let events = SqliteStore::open(dir.join(LOG)).await?;
        let store = events.clone();
        let running = Projections::new(store.clone())
            .batch_size(batch)
            .sqlite(dir.join(MODEL), Balances)
            .projection(PositionsFile::open(&dir.join(POSITIONS))?)
            .start()?;
        say("READY");
        if !finish {
            let names = [Balances::NAME, PositionsFile::NAME];
            run_until_killed(&running, &names, std::future::ready(())).await;
            return Ok(());
        }
        if let Err(e) = running.wait_idle_within(Duration::from_secs(60)).await {
            say(&format!("FAILED {e}"));
            return Err(e.into());
        }
        let head = store.head().await?;
        let at = |name| {
            running
                .status()
                .into_iter()
                .find(|s| s.name == name)
                .map_or(Position::START, |s| s.checkpoint)
        };
        say(&format!(
            "IDLE {head} {} {}",
            at(Balances::NAME),
            at(PositionsFile::NAME)
        ));
        running.stop().await;
        events.close().await;
        Ok::<_, Box<dyn Error>>(())
    })
}
