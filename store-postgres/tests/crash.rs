//! Kill -9 writer processes in the middle of appending, then check the log
//! through annals: every acknowledged append is there, whole, at the
//! positions it was acknowledged at, with the bytes it was sent; no append
//! is half there; positions and every stream's versions have no gaps; and
//! a follower reading through the kills skipped nothing.
//!
//! The writers are this test binary run again with `ANNALS_CRASH_SCHEMA`
//! set: each appends batches from three tasks (so group commits hold
//! several appends), some spanning several streams, and prints
//! `ACK batch first last ids` after each acknowledged append. Two writers
//! run per cycle and are killed at random moments, four cycles over the
//! same schema; each new writer goes on with the streams the killed ones
//! left.

mod common;

use std::time::Duration;

use annals_core::prelude::*;
use annals_core::testkit::crash::{random_batch, seed, verify_batches, Ack, Dice};
use annals_core::{ExpectedVersion, NewEvent, Payload, Position, StreamId};
use annals_postgres::testing::{url_or_skip, Schemas};
use annals_postgres::PostgresStore;
use common::{
    assert_saw_the_whole_log, first_acks, follow, print_ack, spawn_child, Acks, TestResult,
    Waiting, PATIENCE,
};
use tokio::sync::watch;

const TEST: &str = "acknowledged_appends_survive_sigkill_whole_and_followers_skip_nothing";
const CHILD: &str = "ANNALS_CRASH_SCHEMA";
const CYCLES: u64 = 4;
const WRITERS: u64 = 2;
const TASKS: u64 = 3;
const STREAMS_PER_TASK: u64 = 4;

/// The most events one append holds.
const MAX_EVENTS: u64 = 12;

/// The stream `k` of the task `task` in writer slot `slot`.
fn stream_of(slot: u64, task: u64, k: u64) -> TestResult<StreamId> {
    Ok(StreamId::new(format!("crash-s{slot}t{task}.{k}"))?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_appends_survive_sigkill_whole_and_followers_skip_nothing() -> TestResult {
    let Some(url) = url_or_skip(TEST) else {
        return Ok(());
    };
    if let Ok(schema) = std::env::var(CHILD) {
        return writer_process(&url, &schema).await;
    }
    let seed = seed();
    println!("seed {seed} (set ANNALS_TEST_SEED to repeat)");
    let mut dice = Dice::new(seed);
    let schemas = Schemas::new(url.clone(), "crash");
    let store = schemas.store().await?;
    let schema = store.schema().to_owned();
    let (end, until) = watch::channel(None::<Position>);
    let follower = tokio::spawn(follow(store.clone(), 13, Waiting::Watches, until));

    let mut acked: Vec<Ack> = Vec::new();
    let mut unacked_before = 0;
    for cycle in 0..CYCLES {
        let before = acked.len();
        let mut writers = Vec::new();
        for slot in 0..WRITERS {
            let mut child = spawn_child(
                TEST,
                CHILD,
                &schema,
                &[
                    ("ANNALS_CRASH_SLOT", slot.to_string()),
                    ("ANNALS_CRASH_CYCLE", cycle.to_string()),
                    (
                        "ANNALS_TEST_SEED",
                        (seed ^ (cycle * 8 + slot + 1)).to_string(),
                    ),
                ],
            )?;
            let acks = Acks::collect(&mut child)?;
            writers.push((child, acks));
        }
        // Let both get going, then kill each at its own random moment.
        first_acks(&mut writers).await?;
        for (child, _) in &mut writers {
            tokio::time::sleep(Duration::from_millis(20 + dice.roll(250))).await;
            child.kill()?;
        }
        for (mut child, acks) in writers {
            tokio::task::spawn_blocking(move || child.wait()).await??;
            for line in acks.finish()? {
                acked.push(Ack::parse(&line)?);
            }
        }
        let in_cycle = acked.len() - before;
        let unacked_total = verify(&store, &acked, seed).await?;
        let unacked = unacked_total - unacked_before;
        unacked_before = unacked_total;
        println!("cycle {cycle}: {in_cycle} acknowledged, {unacked} committed without an ACK");
        // An append in flight when its writer died may have committed
        // unacknowledged; every task has at most one in flight.
        assert!(
            unacked <= usize::try_from(WRITERS * TASKS)?,
            "cycle {cycle}: {unacked} appends committed but never acknowledged, more than \
             could be in flight (seed {seed})"
        );
    }

    // The log still takes appends, and the follower, which read through
    // every kill, was given all of it.
    store
        .append_to_stream(
            &StreamId::new("after-1")?,
            ExpectedVersion::NoStream,
            vec![NewEvent::new("After", 1, Payload::from_json("{}")?)?],
        )
        .await?;
    let log = annals_core::testkit::read_log(&store).await?;
    end.send_replace(log.last().map(|e| e.position));
    let seen = tokio::time::timeout(PATIENCE, follower)
        .await
        .map_err(|_| "the follower never caught up with the head")??
        .map_err(|broken| format!("the follower: {broken} (seed {seed})"))?;
    assert_saw_the_whole_log("the follower", &seen, &log);
    schemas.drop_all().await;
    Ok(())
}

/// Reads the whole log through annals and checks it; returns how many
/// batches are stored without an acknowledgement.
async fn verify(store: &PostgresStore, acked: &[Ack], seed: u64) -> TestResult<usize> {
    let events = annals_core::testkit::read_log(store).await?;
    Ok(verify_batches(&events, acked, &format!("seed {seed}"))?)
}

/// One writer process: appends from several tasks until it is killed (or
/// for 30 s, so that it never outlives a parent that died).
async fn writer_process(url: &str, schema: &str) -> TestResult {
    let slot: u64 = std::env::var("ANNALS_CRASH_SLOT")?.parse()?;
    let cycle: u64 = std::env::var("ANNALS_CRASH_CYCLE")?.parse()?;
    let store = PostgresStore::options()
        .url(url)
        .schema(schema)
        .connect()
        .await?;
    let seed = seed();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut dice = Dice::new(seed.wrapping_mul(task + 7) | 1);
            // Go on where the killed writers of this slot left off,
            // including what they committed without acknowledging.
            let mut streams = Vec::new();
            for k in 0..STREAMS_PER_TASK {
                let stream = stream_of(slot, task, k)?;
                let version = store.stream_version(&stream).await?;
                streams.push((stream, version.unwrap_or(0)));
            }
            let mut n = 0u64;
            while std::time::Instant::now() < deadline {
                let batch = format!("c{cycle}s{slot}t{task}n{n}");
                n += 1;
                let request = random_batch(&mut dice, &batch, MAX_EVENTS, &mut streams);
                let ids = request.events().map(NewEvent::event_id).collect();
                let outcome = store.append(request).await?;
                print_ack(&Ack::new(batch, ids, &outcome).line());
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}
