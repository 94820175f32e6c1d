//! Kill -9 a process in the middle of appending, then check the file
//! through annals: every acknowledged append is there, whole and in order,
//! at the positions and with the event ids it was acknowledged with, and no
//! append is half there.
//!
//! The child is this test binary run again with `ANNALS_CRASH_CHILD` set: it
//! appends batches from four tasks (so group commits hold several appends),
//! some spanning several streams, and prints `ACK batch first last ids`
//! after each acknowledged append. The parent kills it at a random moment,
//! five times over the same file; the last two children run with relaxed
//! durability, which must survive a process crash just as well.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use annals_core::testkit::crash::{random_batch, seed, verify_batches, Ack, Dice};
use annals_core::{EventStore, EventStoreExt, NewEvent, StreamId};
use annals_sqlite::{Durability, SqliteStore};

const CHILD: &str = "ANNALS_CRASH_CHILD";
const TASKS: usize = 4;
const STREAMS_PER_TASK: u64 = 5;
const CYCLES: u64 = 5;

/// The most events one append holds.
const MAX_EVENTS: u64 = 20;

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
    let mut dice = Dice::new(seed);
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
                    // The test harness may print on the same line before the first ACK.
                    if let Some(at) = line.find("ACK ") {
                        lines
                            .lock()
                            .expect("ack list lock")
                            .push(line[at + 4..].to_owned());
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
        for line in lines.lock().expect("ack list lock").drain(..) {
            acked.push(Ack::parse(&line)?);
        }
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
    Ok(verify_batches(&events, acked, &format!("seed {seed}"))?)
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
                let mut dice = Dice::new(seed.wrapping_mul(task + 7) | 1);
                // Go on where the killed children left off, including what
                // they committed without acknowledging.
                let mut streams = Vec::new();
                for k in 0..STREAMS_PER_TASK {
                    let stream = stream_of(task, k);
                    let v = store.stream_version(&stream).await.expect("version");
                    streams.push((stream, v.unwrap_or(0)));
                }
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let batch = format!("c{cycle}t{task}n{n}");
                    n += 1;
                    let request = random_batch(&mut dice, &batch, MAX_EVENTS, &mut streams);
                    let ids = request.events().map(NewEvent::event_id).collect();
                    let outcome = store.append(request).await.expect("child append");
                    // The line goes out in one write (pipe writes this short
                    // are atomic), so a kill does not leave half an ACK.
                    let line = format!("ACK {}\n", Ack::new(batch, ids, &outcome).line());
                    let mut out = std::io::stdout().lock();
                    out.write_all(line.as_bytes())
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
