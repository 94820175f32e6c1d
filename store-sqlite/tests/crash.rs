//! Kill -9 a process in the middle of appending, then check the file
//! through annals: every acknowledged append is there, whole and in order,
//! and no append is half there.
//!
//! The child is this test binary run again with `ANNALS_CRASH_CHILD` set: it
//! appends batches from four tasks (so group commits hold several appends),
//! some spanning several streams, and prints `ACK batch first last` after
//! each acknowledged append. The parent kills it at a random moment, five
//! times over the same file; the last two children run with relaxed
//! durability, which must survive a process crash just as well.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use annals_core::{
    AppendRequest, EventStore, EventStoreExt, ExpectedVersion, Metadata, NewEvent, Payload,
    RecordedEvent, StreamId,
};
use annals_sqlite::{Durability, SqliteStore};

const CHILD: &str = "ANNALS_CRASH_CHILD";
const TASKS: usize = 4;
const STREAMS_PER_TASK: u64 = 5;
const CYCLES: u64 = 5;

/// A small deterministic generator, so a failing run can be repeated.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % sides
    }
}

fn seed() -> u64 {
    std::env::var("ANNALS_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| {
                    u64::try_from(d.as_nanos() % u128::from(u64::MAX)).unwrap_or(1) | 1
                })
        })
}

/// The payload of event `index` of batch `batch`: a pure function of both.
fn payload_of(batch: &str, index: u64) -> String {
    let pad = "x".repeat(usize::try_from(index * 7 % 50).unwrap_or(0));
    format!(r#"{{"batch":"{batch}","index":{index},"pad":"{pad}"}}"#)
}

fn stream_of(task: u64, k: u64) -> StreamId {
    StreamId::new(format!("crash-{task}.{k}")).expect("valid stream id")
}

#[test]
fn acknowledged_appends_survive_sigkill_whole_and_in_order(
) -> Result<(), Box<dyn std::error::Error>> {
    if let Ok(path) = std::env::var(CHILD) {
        child(&path);
        return Ok(());
    }
    let seed = seed();
    println!("seed {seed} (set ANNALS_TEST_SEED to repeat)");
    let mut dice = Dice(seed);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("crash.db");
    let mut acked: Vec<Ack> = Vec::new();
    let mut unacked_before = 0;
    for cycle in 0..CYCLES {
        let before = acked.len();
        let mut child = Command::new(std::env::current_exe()?)
            .args([
                "--exact",
                "acknowledged_appends_survive_sigkill_whole_and_in_order",
                "--nocapture",
            ])
            .env(CHILD, &path)
            .env("ANNALS_CRASH_CYCLE", cycle.to_string())
            .env("ANNALS_TEST_SEED", (seed ^ (cycle + 1)).to_string())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no child stdout")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let lines = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(ack) = Ack::parse(&line) {
                        lines.lock().expect("ack list lock").push(ack);
                    }
                }
            })
        };
        // Let the child get going (a bounded wait for its first ACK), then
        // kill it at a random moment.
        let started = Instant::now();
        while lines.lock().expect("ack list lock").is_empty() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "cycle {cycle}: the child acknowledged nothing (seed {seed})"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(50 + dice.roll(400)));
        child.kill()?;
        child.wait()?;
        reader.join().map_err(|_| "ack reader panicked")?;
        acked.extend(lines.lock().expect("ack list lock").drain(..));
        let in_cycle = acked.len() - before;
        assert!(in_cycle > 0, "cycle {cycle}: no acknowledged appends");
        let unacked_total = verify(&path, &acked, seed)?;
        let unacked = unacked_total - unacked_before;
        unacked_before = unacked_total;
        println!("cycle {cycle}: {in_cycle} acknowledged, {unacked} committed without an ACK");
        assert!(
            unacked <= TASKS,
            "cycle {cycle}: {unacked} appends committed but never acknowledged, \
             more than the {TASKS} that can be in flight (seed {seed})"
        );
    }
    check_integrity(&path)?;
    Ok(())
}

/// One acknowledged append, as the child reported it.
#[derive(Debug, Clone)]
struct Ack {
    batch: String,
    first: u64,
    last: u64,
}

impl Ack {
    fn parse(line: &str) -> Option<Ack> {
        // The test harness may print on the same line before the first ACK.
        let at = line.find("ACK ")?;
        let mut parts = line[at + 4..].split(' ');
        Some(Ack {
            batch: parts.next()?.to_owned(),
            first: parts.next()?.parse().ok()?,
            last: parts.next()?.parse().ok()?,
        })
    }
}

/// Reopens the file through annals and checks it; returns how many batches
/// are stored without an acknowledgement.
fn verify(
    path: &std::path::Path,
    acked: &[Ack],
    seed: u64,
) -> Result<usize, Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let events = runtime.block_on(async {
        let store = SqliteStore::open(path).await?;
        let events = annals_core::testkit::read_log(&store).await?;
        store.close().await;
        Ok::<_, Box<dyn std::error::Error>>(events)
    })?;
    annals_core::testkit::assert_no_gaps(&events, &format!("seed {seed}"));
    // Each stored batch is whole, with the payloads its child wrote.
    let mut batches: BTreeMap<String, Vec<&RecordedEvent>> = BTreeMap::new();
    for e in &events {
        let batch = e.metadata.fields["batch_id"].as_str().ok_or("batch_id")?;
        batches.entry(batch.to_owned()).or_default().push(e);
    }
    for (batch, stored) in &batches {
        let count = stored[0].metadata.fields["count"].as_u64().ok_or("count")?;
        assert_eq!(
            stored.len() as u64,
            count,
            "batch {batch} is torn (seed {seed})"
        );
        for (e, index) in stored.iter().zip(0u64..) {
            assert_eq!(
                e.metadata.fields["index"].as_u64(),
                Some(index),
                "batch {batch} out of order"
            );
            assert_eq!(
                e.payload.as_str(),
                payload_of(batch, index),
                "batch {batch}: payload changed"
            );
        }
        let positions: Vec<u64> = stored.iter().map(|e| e.position.0).collect();
        assert!(
            positions.windows(2).all(|w| w[1] == w[0] + 1),
            "batch {batch} is not contiguous in the log"
        );
    }
    // Every acknowledged append is there, where it was acknowledged.
    for ack in acked {
        let stored = batches
            .get(&ack.batch)
            .unwrap_or_else(|| panic!("acknowledged batch {} is missing (seed {seed})", ack.batch));
        assert_eq!(
            (stored[0].position.0, stored[stored.len() - 1].position.0),
            (ack.first, ack.last),
            "batch {} moved (seed {seed})",
            ack.batch
        );
    }
    let acked: std::collections::HashSet<&str> = acked.iter().map(|a| a.batch.as_str()).collect();
    Ok(batches
        .keys()
        .filter(|b| !acked.contains(b.as_str()))
        .count())
}

fn check_integrity(path: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let conn = rusqlite::Connection::open(path)?;
    let result: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    assert_eq!(result, "ok");
    Ok(())
}

/// The child: appends until killed (or for 30 s, so it never outlives a
/// parent that died).
fn child(path: &str) {
    let cycle: u64 = std::env::var("ANNALS_CRASH_CYCLE")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let seed = seed();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("child runtime");
    runtime.block_on(async move {
        // A process crash loses nothing in either durability mode: the
        // last cycles run relaxed.
        let durability = if cycle + 2 >= CYCLES {
            Durability::Relaxed
        } else {
            Durability::Full
        };
        let store = SqliteStore::options()
            .path(path)
            .durability(durability)
            .open()
            .await
            .expect("child opens the store");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut tasks = Vec::new();
        for task in 0..TASKS as u64 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut dice = Dice(seed.wrapping_mul(task + 7) | 1);
                let mut versions = Vec::new();
                for k in 0..STREAMS_PER_TASK {
                    let v = store
                        .stream_version(&stream_of(task, k))
                        .await
                        .expect("version");
                    versions.push(v.unwrap_or(0));
                }
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let batch = format!("c{cycle}t{task}n{n}");
                    n += 1;
                    let count = 1 + dice.roll(20);
                    let spans = (1 + dice.roll(3)).min(count);
                    let first_stream = dice.roll(STREAMS_PER_TASK);
                    let mut request = AppendRequest::new();
                    let mut index = 0;
                    for s in 0..spans {
                        let k = (first_stream + s) % STREAMS_PER_TASK;
                        let here = if s + 1 == spans {
                            count - index
                        } else {
                            1 + dice.roll(count - index - (spans - s - 1))
                        };
                        let events = (index..index + here)
                            .map(|i| {
                                let mut metadata = Metadata::default();
                                metadata
                                    .fields
                                    .insert("batch_id".into(), batch.clone().into());
                                metadata.fields.insert("index".into(), i.into());
                                metadata.fields.insert("count".into(), count.into());
                                let payload =
                                    Payload::from_json(payload_of(&batch, i)).expect("valid");
                                NewEvent::new("Crashed", 1, payload)
                                    .expect("valid")
                                    .with_metadata(metadata)
                            })
                            .collect();
                        request = request.stream(
                            stream_of(task, k),
                            ExpectedVersion::Exact(versions[k as usize]),
                            events,
                        );
                        versions[k as usize] += here;
                        index += here;
                    }
                    let outcome = store.append(request).await.expect("child append");
                    let (first, last) = (outcome.first_position(), outcome.last_position());
                    let mut out = std::io::stdout().lock();
                    writeln!(
                        out,
                        "ACK {batch} {} {}",
                        first.map_or(0, |p| p.0),
                        last.map_or(0, |p| p.0)
                    )
                    .and_then(|()| out.flush())
                    .expect("child writes its ACK");
                }
            }));
        }
        for t in tasks {
            t.await.expect("child task");
        }
    });
}
