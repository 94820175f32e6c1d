//! No reader of the global log ever skips an event, with writers in four
//! processes and a foreign transaction that holds the head lock mid-append.
//!
//! The writers are this test binary run again with `ANNALS_NO_SKIP_SCHEMA`
//! set: each appends from three tasks (multi-event, sometimes multi-stream
//! appends, private and shared streams) until its stdin closes, and prints
//! `ACK <event ids>` after each acknowledged append. Meanwhile a raw
//! connection takes the head lock as an append does, inserts an event and
//! holds its transaction open for a while before it commits (once it rolls
//! back instead), and followers in this process read the log in pages from
//! their last position, one of them waking on the head watch. At the end
//! every follower was given exactly the log, in order, and the log has no
//! gaps.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use annals_core::prelude::*;
use annals_core::testkit::crash::{seed, Dice};
use annals_core::{
    AppendRequest, EventId, ExpectedVersion, NewEvent, Payload, Position, ReadAll, StreamId,
};
use annals_postgres::testing::{url_or_skip, Schemas};
use annals_postgres::tokio_postgres::Client;
use annals_postgres::PostgresStore;
use common::{
    assert_saw_the_whole_log, first_acks, follow, print_ack, raw, spawn_child, stdin_closed, Acks,
    TestResult, Waiting, PATIENCE,
};
use tokio::sync::watch;

const TEST: &str = "followers_never_skip_with_writers_in_four_processes_and_a_held_append";
const CHILD: &str = "ANNALS_NO_SKIP_SCHEMA";
const PROCESSES: usize = 4;
const TASKS: u64 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_never_skip_with_writers_in_four_processes_and_a_held_append() -> TestResult {
    let Some(url) = url_or_skip(TEST) else {
        return Ok(());
    };
    if let Ok(schema) = std::env::var(CHILD) {
        return writer_process(&url, &schema).await;
    }
    let seed = seed();
    println!("seed {seed} (set ANNALS_TEST_SEED to repeat)");
    let schemas = Schemas::new(url.clone(), "no_skip");
    let store = schemas.store().await?;
    let schema = store.schema().to_owned();
    let reader = schemas.open(schemas.options().schema(&schema)).await?;

    let (end, until) = watch::channel(None::<Position>);
    let followers: Vec<_> = [
        ("paging follower (7)", 7, Waiting::Polls),
        ("paging follower (64)", 64, Waiting::Polls),
        ("watching follower (25)", 25, Waiting::Watches),
    ]
    .into_iter()
    .map(|(name, page, waiting)| {
        let follower = tokio::spawn(follow(reader.clone(), page, waiting, until.clone()));
        (name, follower)
    })
    .collect();

    let mut writers = Vec::new();
    for writer in 0..PROCESSES {
        let mut child = spawn_child(
            TEST,
            CHILD,
            &schema,
            &[
                ("ANNALS_NO_SKIP_WRITER", writer.to_string()),
                ("ANNALS_TEST_SEED", (seed ^ (writer as u64 + 1)).to_string()),
            ],
        )?;
        let acks = Acks::collect(&mut child)?;
        writers.push((child, acks));
    }
    // Every writer is appending before the head lock is taken from outside.
    first_acks(&mut writers).await?;

    let holder = raw(&url).await?;
    let mut held_ids = HashSet::new();
    let mut rolled_back = None;
    for (hold, commit) in [(1000, true), (400, false), (400, true)] {
        let id = hold_an_append(
            &holder,
            &store,
            &schema,
            Duration::from_millis(hold),
            commit,
        )
        .await?;
        if commit {
            held_ids.insert(id);
        } else {
            rolled_back = Some(id);
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }

    // Stop the writers: they finish the append in hand and exit.
    let mut acked: HashSet<EventId> = HashSet::new();
    for (child, _) in &mut writers {
        drop(child.stdin.take());
    }
    for (child, acks) in writers {
        let output = tokio::time::timeout(
            PATIENCE,
            tokio::task::spawn_blocking(move || child.wait_with_output()),
        )
        .await???;
        assert!(output.status.success(), "a writer process failed");
        for line in acks.finish()? {
            for id in line.split(',') {
                let id = EventId::from_uuid(id.parse()?)?;
                assert!(acked.insert(id), "event {id} was acknowledged twice");
            }
        }
    }

    let head = store.head().await?;
    end.send_replace(Some(head));
    let log = annals_core::testkit::read_log(&store).await?;
    annals_core::testkit::assert_no_gaps(&log, &format!("seed {seed}"));
    assert_eq!(log.last().map(|e| e.position), Some(head));
    let mut stored: HashMap<EventId, usize> = HashMap::new();
    for e in &log {
        *stored.entry(e.event_id).or_default() += 1;
    }
    assert!(stored.values().all(|n| *n == 1), "an event is stored twice");
    let expected: HashSet<EventId> = acked.union(&held_ids).copied().collect();
    let stored: HashSet<EventId> = stored.into_keys().collect();
    assert_eq!(
        stored.len(),
        expected.len(),
        "the log holds {} events, {} were acknowledged or committed by the holder (seed {seed})",
        stored.len(),
        expected.len()
    );
    assert_eq!(stored, expected, "the log is not what was acknowledged");
    if let Some(id) = rolled_back {
        assert!(!stored.contains(&id), "a rolled-back event is in the log");
    }
    println!(
        "{} events from {PROCESSES} processes and the holder",
        log.len()
    );

    for (name, follower) in followers {
        let seen = tokio::time::timeout(PATIENCE, follower)
            .await
            .map_err(|_| format!("{name} never caught up with the head"))??
            .map_err(|broken| format!("{name}: {broken} (seed {seed})"))?;
        assert_saw_the_whole_log(name, &seen, &log);
    }
    schemas.drop_all().await;
    Ok(())
}

/// Takes the head lock from a raw connection as an append does, inserts
/// one event at the next position, holds the transaction open for `hold`
/// and then commits or rolls back. While it holds, no reader may read
/// through the held position. Returns the event's id.
async fn hold_an_append(
    client: &Client,
    store: &PostgresStore,
    schema: &str,
    hold: Duration,
    commit: bool,
) -> TestResult<EventId> {
    let s = format!("\"{schema}\"");
    client.batch_execute("BEGIN").await?;
    let position: i64 = client
        .query_one(
            &format!(
                "UPDATE {s}.log_head SET position = position + 1 WHERE one RETURNING position"
            ),
            &[],
        )
        .await?
        .get(0);
    let version: i64 = client
        .query_one(
            &format!(
                "SELECT coalesce(max(version), 0) + 1 FROM {s}.events WHERE stream_id = 'holder-1'"
            ),
            &[],
        )
        .await?
        .get(0);
    let id = EventId::new();
    let micros = annals_core::Timestamp::now().as_unix_micros();
    client
        .execute(
            &format!(
                "INSERT INTO {s}.events (position, stream_id, version, event_id, event_type, \
                 schema_version, payload, metadata, recorded_at) \
                 VALUES ($1, 'holder-1', $2, $3, 'Held', 1, '{{\"held\":true}}', NULL, $4)"
            ),
            &[&position, &version, id.as_uuid(), &micros],
        )
        .await?;
    let held = Position(u64::try_from(position)?);
    tokio::time::sleep(hold / 2).await;
    let page = store.read_all(ReadAll::after(Position(held.0 - 1))).await?;
    assert!(
        page.is_empty() && page.read_through < held,
        "a reader read through {} while position {held} was held uncommitted",
        page.read_through
    );
    tokio::time::sleep(hold / 2).await;
    client
        .batch_execute(if commit { "COMMIT" } else { "ROLLBACK" })
        .await?;
    Ok(id)
}

/// One writer process: three tasks append until stdin closes.
async fn writer_process(url: &str, schema: &str) -> TestResult {
    let writer: u64 = std::env::var("ANNALS_NO_SKIP_WRITER")?.parse()?;
    let store = PostgresStore::options()
        .url(url)
        .schema(schema)
        .connect()
        .await?;
    let stop = stdin_closed();
    let seed = seed();
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let store = store.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut dice = Dice::new(seed.wrapping_mul(task + 3) | 1);
            let mut versions = [0u64; 3];
            let mut n = 0u64;
            while !*stop.borrow() {
                n += 1;
                let k = usize::try_from(dice.roll(3))?;
                let count = 1 + dice.roll(5);
                let private = StreamId::new(format!("private-w{writer}t{task}k{k}"))?;
                let events = |count: u64| -> TestResult<Vec<NewEvent>> {
                    (0..count)
                        .map(|i| {
                            let payload = Payload::from_json(format!(
                                r#"{{"writer":{writer},"task":{task},"n":{n},"i":{i}}}"#
                            ))?;
                            Ok(NewEvent::new("Written", 1, payload)?)
                        })
                        .collect()
                };
                let mut request = AppendRequest::new().stream(
                    private,
                    ExpectedVersion::Exact(versions[k]),
                    events(count)?,
                );
                versions[k] += count;
                // Every third append also writes to a stream all share.
                if n % 3 == 0 {
                    let shared = StreamId::new(format!("shared-{}", dice.roll(2)))?;
                    request = request.stream(shared, ExpectedVersion::Any, events(2)?);
                }
                let ids: Vec<String> = request.events().map(|e| e.event_id().to_string()).collect();
                store.append(request).await?;
                print_ack(&ids.join(","));
                tokio::time::sleep(Duration::from_millis(dice.roll(4))).await;
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    store.close().await;
    Ok(())
}
