//! Projections follow a store that two processes append to at once.
//!
//! - No skip: while this process and a child each append from four tasks
//!   to shared streams, the projections here (an SQLite read model and an
//!   in-memory one, the read model restarted from its checkpoint halfway)
//!   end up with every event exactly once, each stream's events in order,
//!   and each writer's events in the order it wrote them. A follower that
//!   moved past a position before a slower commit filled it would show a
//!   missing event here.
//! - Cross-process wake: a commit made by another process wakes a live
//!   projection here through the store's head watch, without the runner's
//!   own poll.
//!
//! The child is this test binary run again with a variable naming the
//! store's file.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use annals_core::testkit::bank::AccountEvent;
use annals_core::{
    AppendRequest, EventStore, ExpectedVersion, Metadata, NewEvent, Position, RecordedEvent,
    StreamId,
};
use annals_projections::{
    Envelope, HandlerError, Projection, ProjectionState, Projections, Running, SqliteProjection,
};
use annals_sqlite::SqliteStore;
use common::{expect_line, say, seed, spawn_child, Dice, SEED};
use rusqlite::{params, Transaction};

const WRITERS_TEST: &str =
    "read_models_hold_every_event_once_in_order_with_writers_in_two_processes";
const WRITERS_CHILD: &str = "ANNALS_PROJECTION_WRITERS_CHILD";
const WAKE_TEST: &str = "a_commit_in_another_process_wakes_a_live_projection";
const WAKE_CHILD: &str = "ANNALS_PROJECTION_WAKE_CHILD";

const TASKS: usize = 4;
const APPENDS_PER_TASK: u64 = 100;
const STREAMS: u64 = 6;

/// One handled event, as a read model keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    position: u64,
    stream: String,
    version: u64,
    writer: String,
    seq: u64,
}

impl Seen {
    fn of(position: Position, stream: &StreamId, version: u64, metadata: &Metadata) -> Self {
        Seen {
            position: position.0,
            stream: stream.as_str().to_owned(),
            version,
            writer: metadata
                .fields
                .get("writer")
                .and_then(|w| w.as_str())
                .unwrap_or_default()
                .to_owned(),
            seq: metadata
                .fields
                .get("seq")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or_default(),
        }
    }

    fn stored(event: &RecordedEvent) -> Self {
        Seen::of(
            event.position,
            &event.stream_id,
            event.version,
            &event.metadata,
        )
    }

    fn handled(event: &Envelope<AccountEvent>) -> Self {
        Seen::of(
            event.position,
            &event.stream_id,
            event.version,
            &event.metadata,
        )
    }
}

/// Every event handled, a row each in the order handled.
struct Handled;

impl SqliteProjection for Handled {
    type Events = AccountEvent;
    const NAME: &'static str = "handled";

    fn create(&self, db: &Transaction<'_>) -> Result<(), HandlerError> {
        // `delivery` numbers the rows in the order they were inserted.
        db.execute_batch(
            "CREATE TABLE handled (
                 delivery INTEGER PRIMARY KEY,
                 position INTEGER NOT NULL UNIQUE,
                 stream TEXT NOT NULL,
                 version INTEGER NOT NULL,
                 writer TEXT NOT NULL,
                 seq INTEGER NOT NULL
             ) STRICT",
        )?;
        Ok(())
    }

    fn handle(
        &mut self,
        db: &Transaction<'_>,
        event: &Envelope<AccountEvent>,
    ) -> Result<(), HandlerError> {
        let seen = Seen::handled(event);
        db.execute(
            "INSERT INTO handled (position, stream, version, writer, seq)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                i64::try_from(seen.position)?,
                seen.stream,
                i64::try_from(seen.version)?,
                seen.writer,
                i64::try_from(seen.seq)?
            ],
        )?;
        Ok(())
    }
}

fn handled_rows(path: &Path) -> Result<Vec<Seen>, Box<dyn Error>> {
    let db = rusqlite::Connection::open(path)?;
    let rows = db
        .prepare("SELECT position, stream, version, writer, seq FROM handled ORDER BY delivery")?
        .query_map([], |r| {
            Ok(Seen {
                position: r.get(0)?,
                stream: r.get(1)?,
                version: r.get(2)?,
                writer: r.get(3)?,
                seq: r.get(4)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Every event handled, in memory, in the order handled.
#[derive(Default, Clone)]
struct InMemory(Arc<Mutex<Vec<Seen>>>);

impl InMemory {
    fn seen(&self) -> Vec<Seen> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait::async_trait]
impl Projection for InMemory {
    type Events = AccountEvent;
    const NAME: &'static str = "in-memory";
    const IN_MEMORY: bool = true;

    async fn handle(&mut self, event: &Envelope<AccountEvent>) -> Result<(), HandlerError> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Seen::handled(event));
        Ok(())
    }

    async fn reset(&mut self) -> Result<(), HandlerError> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        Ok(())
    }
}

/// Appends `appends` batches of 1 to 5 deposits from each of `TASKS`
/// tasks to streams shared by both processes. Each event carries its
/// writer and its place in that writer's sequence; task `t` starts at
/// `next[t]`, and the sequence numbers that come next are returned.
async fn append_from_tasks(
    store: SqliteStore,
    process: u64,
    seed: u64,
    appends: u64,
    next: &[u64],
) -> Result<Vec<u64>, Box<dyn Error>> {
    let mut tasks = Vec::new();
    for (task, &from) in (0u64..).zip(next) {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut dice = Dice::new(seed ^ (from << 16 | process << 8 | task));
            let writer = format!("p{process}t{task}");
            let mut seq = from;
            for _ in 0..appends {
                let count = 1 + dice.roll(5);
                let events = (0..count)
                    .map(|_| {
                        let mut metadata = Metadata::default();
                        metadata
                            .fields
                            .insert("writer".into(), writer.clone().into());
                        metadata.fields.insert("seq".into(), seq.into());
                        seq += 1;
                        NewEvent::from_domain(&AccountEvent::Deposited { amount: 1 }, metadata)
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| e.to_string())?;
                let stream = StreamId::new(format!("account-{}", dice.roll(STREAMS)))
                    .map_err(|e| e.to_string())?;
                store
                    .append(AppendRequest::to_stream(
                        stream,
                        ExpectedVersion::Any,
                        events,
                    ))
                    .await
                    .map_err(|e| e.to_string())?;
                // A pause now and then lets the other process take the
                // file's write lock: SQLite's busy wait does not queue
                // writers fairly, and one process could otherwise append
                // everything before the other starts.
                tokio::time::sleep(Duration::from_millis(dice.roll(3))).await;
            }
            Ok::<u64, String>(seq)
        }));
    }
    let mut after = Vec::with_capacity(tasks.len());
    for task in tasks {
        after.push(task.await??);
    }
    Ok(after)
}

/// Checks that a model received each event of `log` exactly once, in
/// position order, each stream's events in version order and each
/// writer's in the order written.
fn check_model(name: &str, delivered: &[Seen], log: &[RecordedEvent], seed: u64) {
    assert_eq!(
        delivered.len(),
        log.len(),
        "{name}: {} events handled for {} in the log (seed {seed})",
        delivered.len(),
        log.len()
    );
    let positions: BTreeSet<u64> = delivered.iter().map(|s| s.position).collect();
    let stored: BTreeSet<u64> = log.iter().map(|e| e.position.0).collect();
    assert_eq!(
        positions, stored,
        "{name}: the positions handled are not the log's (seed {seed})"
    );
    assert!(
        delivered.windows(2).all(|w| w[0].position < w[1].position),
        "{name}: events were handled out of position order (seed {seed})"
    );
    let mut streams: BTreeMap<&str, Vec<&Seen>> = BTreeMap::new();
    let mut writers: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for seen in delivered {
        streams.entry(&seen.stream).or_default().push(seen);
        writers.entry(&seen.writer).or_default().push(seen.seq);
    }
    for (stream, seen) in &streams {
        let versions: Vec<u64> = seen.iter().map(|s| s.version).collect();
        assert_counts_from(
            1,
            &versions,
            &format!("{name}: stream {stream}'s versions"),
            seed,
        );
        assert!(
            seen.windows(2).all(|w| w[0].position < w[1].position),
            "{name}: stream {stream}'s positions do not increase (seed {seed})"
        );
    }
    for (writer, seqs) in &writers {
        assert_counts_from(0, seqs, &format!("{name}: writer {writer}'s events"), seed);
    }
    let in_log: Vec<Seen> = log.iter().map(Seen::stored).collect();
    let mut by_position = delivered.to_vec();
    by_position.sort_by_key(|s| s.position);
    assert_eq!(
        by_position, in_log,
        "{name}: what was handled differs from the log (seed {seed})"
    );
}

/// `values` are `first`, `first + 1`, ... in this order: nothing handled
/// out of order, nothing missing.
fn assert_counts_from(first: u64, values: &[u64], what: &str, seed: u64) {
    let expected: Vec<u64> = (first..).take(values.len()).collect();
    assert_eq!(
        values, expected,
        "{what} were handled out of order or with a gap (seed {seed})"
    );
}

fn start_projections(
    store: &SqliteStore,
    model: &Path,
    memory: &InMemory,
) -> Result<Running, Box<dyn Error>> {
    Ok(Projections::new(store.clone())
        // Small batches: many reads, each a chance to skip.
        .batch_size(7)
        .sqlite(model, Handled)
        .projection(memory.clone())
        .start()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_models_hold_every_event_once_in_order_with_writers_in_two_processes(
) -> Result<(), Box<dyn Error>> {
    if let Ok(path) = std::env::var(WRITERS_CHILD) {
        let store = SqliteStore::open(&path).await?;
        say("READY");
        let start = [0; TASKS];
        let next = append_from_tasks(store.clone(), 1, seed(), APPENDS_PER_TASK, &start).await?;
        store.close().await;
        say(&format!("DONE {}", next.iter().sum::<u64>()));
        return Ok(());
    }
    let seed = seed();
    println!("seed {seed} (set {SEED} to repeat)");
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("log.db");
    let model = dir.path().join("handled.db");
    // Create the file first so that both processes open an existing store.
    let events = SqliteStore::open(&path).await?;
    let store = events.clone();
    let running = start_projections(&store, &model, &InMemory::default())?;

    let (mut child, lines) = spawn_child(
        WRITERS_TEST,
        &[
            (WRITERS_CHILD, path.display().to_string()),
            (SEED, seed.to_string()),
        ],
    )?;
    let lines = tokio::task::block_in_place(|| {
        expect_line(&lines, "READY", Duration::from_secs(30)).map(|_| lines)
    })?;
    let half = APPENDS_PER_TASK / 2;
    let start = [0; TASKS];
    let next = append_from_tasks(events.clone(), 0, seed, half, &start).await?;
    // Halfway, the read model starts again from its checkpoint, and the
    // in-memory one from the start of the log, while the child appends.
    running.stop().await;
    let memory = InMemory::default();
    let running = start_projections(&store, &model, &memory)?;
    let next = append_from_tasks(events.clone(), 0, seed, APPENDS_PER_TASK - half, &next).await?;
    let appended: u64 = next.iter().sum();
    let done =
        tokio::task::block_in_place(|| expect_line(&lines, "DONE", Duration::from_secs(60)))?;
    let child_appended: u64 = done.parse()?;
    let status = tokio::task::spawn_blocking(move || child.wait()).await??;
    assert!(status.success(), "the child process failed (seed {seed})");

    let log = annals_core::testkit::read_log(&events).await?;
    assert_eq!(
        log.len() as u64,
        appended + child_appended,
        "the log holds other events than the two processes appended (seed {seed})"
    );
    running.wait_idle_within(Duration::from_secs(30)).await?;
    let head = events.head().await?;
    for status in running.status() {
        assert_eq!(
            status.checkpoint, head,
            "{} is not at the head",
            status.name
        );
    }
    // The test means something only if the two processes' commits
    // interleave in the log.
    let process = |e: &RecordedEvent| Seen::stored(e).writer.starts_with("p0");
    let switches = log
        .windows(2)
        .filter(|w| process(&w[0]) != process(&w[1]))
        .count();
    assert!(
        switches >= 2,
        "the processes took turns only {switches} times (seed {seed})"
    );
    check_model("the SQLite read model", &handled_rows(&model)?, &log, seed);
    check_model("the in-memory projection", &memory.seen(), &log, seed);
    println!(
        "{} events from two processes taking turns {switches} times, each handled once by both models",
        log.len()
    );
    running.stop().await;
    events.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_in_another_process_wakes_a_live_projection() -> Result<(), Box<dyn Error>> {
    if let Ok(path) = std::env::var(WAKE_CHILD) {
        let store = SqliteStore::open(&path).await?;
        let event =
            NewEvent::from_domain(&AccountEvent::Deposited { amount: 1 }, Metadata::default())?;
        let outcome = store
            .append(AppendRequest::to_stream(
                StreamId::new("account-woken")?,
                ExpectedVersion::NoStream,
                vec![event],
            ))
            .await?;
        store.close().await;
        let position = outcome.last_position().ok_or("the append stored nothing")?;
        say(&format!("APPENDED {position}"));
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("log.db");
    let events = SqliteStore::open(&path).await?;
    let store = events.clone();
    let memory = InMemory::default();
    let running = Projections::new(store)
        // The runner's own poll never comes within the test: only the
        // store's head watch can wake the projection.
        .poll_interval(Duration::from_secs(3_600))
        .projection(memory.clone())
        .start()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !matches!(running.status()[0].state, ProjectionState::Live) {
        assert!(Instant::now() < deadline, "the projection never went live");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let (mut child, lines) = spawn_child(WAKE_TEST, &[(WAKE_CHILD, path.display().to_string())])?;
    let appended =
        tokio::task::block_in_place(|| expect_line(&lines, "APPENDED", Duration::from_secs(30)))?;
    let position = Position(appended.parse()?);
    let status = tokio::task::spawn_blocking(move || child.wait()).await??;
    assert!(status.success(), "the child process failed");

    // The store's documented bound is `SqliteOptions::head_poll_interval`
    // (50 ms by default) after the other process's commit; the margin is
    // for a loaded CI machine. The assertion is that it wakes at all, not
    // how fast.
    let bound = Duration::from_millis(50) + Duration::from_secs(5);
    running
        .wait_for_within(InMemory::NAME, position, bound)
        .await?;
    let seen = memory.seen();
    assert_eq!(seen.len(), 1, "one event appended, {} handled", seen.len());
    assert_eq!(seen[0].position, position.0);
    running.stop().await;
    events.close().await;
    Ok(())
}
