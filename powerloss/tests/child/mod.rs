//! The child process: what runs, under the recording shim, until the parent
//! kills it. It appends (through annals, or raw SQLite for the harness
//! check) and prints `ACK batch first last micros-since-start` after each
//! acknowledged append.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use annals_powerloss::Dice;
use annals_sqlite::Durability;

use crate::seed;
use crate::store_api::{self, Batch, Part};

/// The environment variable naming the child's [`Role`].
pub const ROLE: &str = "ANNALS_POWERLOSS_ROLE";
/// The environment variable naming the recorded folder the child works in.
pub const FOLDER: &str = "ANNALS_POWERLOSS_FOLDER";
/// The store's file in the recorded folder.
pub const DB: &str = "events.db";
/// The raw SQLite file of the harness check.
pub const RAW_DB: &str = "raw.db";
/// Tasks appending at once in the child, so group commits hold several.
const TASKS: u64 = 3;
const STREAMS_PER_TASK: u64 = 4;

/// What the child process does.
#[derive(Debug, Clone, Copy)]
pub enum Role {
    /// Appends through annals with full durability.
    Full,
    /// Appends through annals with relaxed durability.
    Relaxed,
    /// The same, with pauses between appends.
    RelaxedPaused,
    /// Inserts with raw SQLite, WAL, `synchronous = OFF`: never syncs.
    RawSyncOff,
}

impl Role {
    /// The role's name, as [`ROLE`] carries it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Full => "full",
            Role::Relaxed => "relaxed",
            Role::RelaxedPaused => "relaxed-paused",
            Role::RawSyncOff => "raw-sync-off",
        }
    }

    fn parse(name: &str) -> Option<Role> {
        [
            Role::Full,
            Role::Relaxed,
            Role::RelaxedPaused,
            Role::RawSyncOff,
        ]
        .into_iter()
        .find(|r| r.name() == name)
    }
}

/// The payload of event `index` of batch `batch`: a pure function of both,
/// of varied length so that WAL frames differ in how full they are.
pub fn payload_of(batch: &str, index: u64) -> String {
    let pad = "x".repeat(usize::try_from(index * 53 % 400).unwrap_or(0));
    format!(r#"{{"batch":"{batch}","index":{index},"pad":"{pad}"}}"#)
}

/// Runs the child's role when this process is a child; false in the parent.
pub fn run_as_child() -> bool {
    let Some(role) = std::env::var(ROLE).ok().and_then(|r| Role::parse(&r)) else {
        return false;
    };
    let folder = PathBuf::from(std::env::var_os(FOLDER).expect("the parent names the folder"));
    let seed = seed();
    match role {
        Role::Full => annals_child(&folder, Durability::Full, Pace::Flat, seed),
        Role::Relaxed => annals_child(&folder, Durability::Relaxed, Pace::Flat, seed),
        Role::RelaxedPaused => annals_child(&folder, Durability::Relaxed, Pace::Paused, seed),
        Role::RawSyncOff => raw_child(&folder, seed),
    }
    true
}

/// How long a child appends if nobody kills it, so it never outlives a
/// parent that died.
const CHILD_DEADLINE: Duration = Duration::from_secs(30);

fn ack(batch: &str, first: u64, last: u64, start: Instant) {
    let micros = start.elapsed().as_micros();
    let mut out = std::io::stdout().lock();
    writeln!(out, "ACK {batch} {first} {last} {micros}")
        .and_then(|()| out.flush())
        .expect("child writes its ACK");
}

/// How the child's tasks space their appends.
#[derive(Debug, Clone, Copy)]
enum Pace {
    /// Each append as soon as the last one is acknowledged.
    Flat,
    /// Half of the appends after a pause of up to 40 ms.
    Paused,
}

/// Appends batches through annals from several tasks until killed.
fn annals_child(folder: &Path, durability: Durability, pace: Pace, seed: u64) {
    let start = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("child runtime");
    runtime.block_on(async move {
        let store = store_api::open(&folder.join(DB), durability)
            .await
            .expect("child opens the store");
        let mut tasks = Vec::new();
        for task in 0..TASKS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut dice = Dice::new(seed.wrapping_mul(task + 7) | 1);
                let mut versions = BTreeMap::new();
                let mut n = 0;
                while start.elapsed() < CHILD_DEADLINE {
                    if matches!(pace, Pace::Paused) && dice.chance(1, 2) {
                        tokio::time::sleep(Duration::from_millis(1 + dice.roll(40))).await;
                    }
                    let batch = next_batch(format!("t{task}n{n}"), task, &mut dice, &mut versions);
                    n += 1;
                    let (first, last) = store_api::append(&store, &batch)
                        .await
                        .expect("child append");
                    ack(&batch.id, first, last, start);
                }
            }));
        }
        for task in tasks {
            task.await.expect("child task");
        }
    });
}

/// A batch of 1-20 events over 1-3 of the task's streams.
fn next_batch(id: String, task: u64, dice: &mut Dice, versions: &mut BTreeMap<u64, u64>) -> Batch {
    let count = 1 + dice.roll(20);
    let spans = (1 + dice.roll(3)).min(count);
    let first_stream = dice.roll(STREAMS_PER_TASK);
    let mut parts = Vec::new();
    let mut index = 0;
    for s in 0..spans {
        let k = (first_stream + s) % STREAMS_PER_TASK;
        // Leave at least one event for each later part.
        let here = if s + 1 == spans {
            count - index
        } else {
            1 + dice.roll(count - index - (spans - s - 1))
        };
        let version = versions.entry(k).or_default();
        parts.push(Part {
            stream: format!("cut-{task}.{k}"),
            expected: *version,
            events: (index..index + here)
                .map(|i| (i, payload_of(&id, i)))
                .collect(),
        });
        *version += here;
        index += here;
    }
    Batch { id, count, parts }
}

/// Inserts batches with raw SQLite that never syncs, until killed.
fn raw_child(folder: &Path, seed: u64) {
    let start = Instant::now();
    let mut conn = rusqlite::Connection::open(folder.join(RAW_DB)).expect("child opens raw.db");
    conn.pragma_update(None, "synchronous", "OFF")
        .expect("synchronous=OFF");
    conn.pragma_update(None, "journal_mode", "WAL")
        .expect("WAL mode");
    conn.execute_batch(
        "CREATE TABLE log (batch TEXT NOT NULL, idx INTEGER NOT NULL, payload TEXT NOT NULL)",
    )
    .expect("child creates its table");
    let mut dice = Dice::new(seed);
    let mut n = 0u64;
    while start.elapsed() < CHILD_DEADLINE {
        let batch = format!("r{n}");
        n += 1;
        let count = 1 + dice.roll(20);
        let tx = conn.transaction().expect("child begins");
        let mut rows = Vec::new();
        for index in 0..count {
            tx.execute(
                "INSERT INTO log (batch, idx, payload) VALUES (?1, ?2, ?3)",
                rusqlite::params![batch, index, payload_of(&batch, index)],
            )
            .expect("child inserts");
            rows.push(tx.last_insert_rowid());
        }
        tx.commit().expect("child commits");
        let rowid = |r: Option<&i64>| r.and_then(|&r| u64::try_from(r).ok()).unwrap_or(0);
        ack(&batch, rowid(rows.first()), rowid(rows.last()), start);
    }
}
