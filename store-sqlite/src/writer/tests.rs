//! How appends are committed: by their caller when the store is quiet, in
//! groups by the writer thread when they arrive during a commit (each
//! checked after the ones before it in the group), and never left hanging
//! when a caller stops waiting.

use std::error::Error;
use std::future::Future;
use std::time::Duration;

use annals_core::prelude::*;
use annals_core::{
    AppendError, AppendRequest, Checkpoint, EventId, ExpectedVersion, NewEvent, Payload, Position,
    StreamId,
};

use crate::{Durability, SqliteStore};

type TestResult = Result<(), Box<dyn Error>>;

fn event(n: usize) -> NewEvent {
    let payload = Payload::from_json(format!("{{\"n\":{n}}}")).expect("valid JSON");
    NewEvent::new("Happened", 1, payload).expect("valid event type")
}

fn stream(id: &str) -> StreamId {
    StreamId::new(id).expect("valid stream id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_on_a_quiet_store_commit_on_their_callers_thread() -> TestResult {
    let store = SqliteStore::open_temporary().await?;
    for n in 0..20 {
        store
            .append_to_stream(&stream("quiet-1"), ExpectedVersion::Any, vec![event(n)])
            .await?;
    }
    let stats = store.writer_stats();
    assert_eq!(stats.caller_commits, 20, "{stats:?}");
    assert_eq!(
        stats.thread_commits, 0,
        "the writer thread was woken: {stats:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn appends_on_a_current_thread_runtime_commit_without_the_writer_thread() -> TestResult {
    let store = SqliteStore::open_temporary().await?;
    for n in 0..5 {
        store
            .append_to_stream(&stream("quiet-1"), ExpectedVersion::Any, vec![event(n)])
            .await?;
    }
    assert_eq!(store.writer_stats().thread_commits, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_arriving_during_a_commit_are_grouped_and_each_answered() -> TestResult {
    const TASKS: usize = 64;
    let store = SqliteStore::open_temporary().await?;
    // Another connection holds the write lock, so that the first append's
    // commit waits (within the busy timeout) while the others queue up.
    let blocker = rusqlite::Connection::open(store.path())?;
    blocker.execute_batch("BEGIN IMMEDIATE")?;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let target = stream(&format!("busy-{t}"));
            store
                .append_to_stream(&target, ExpectedVersion::NoStream, vec![event(t)])
                .await
        }));
        // The first task leads before the others arrive.
        if t == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    blocker.execute_batch("COMMIT")?;
    for task in tasks {
        task.await??;
    }
    assert_eq!(store.head().await?, Position(TASKS as u64));
    let stats = store.writer_stats();
    assert_eq!(stats.caller_commits, 1, "{stats:?}");
    assert!(
        (1..=2).contains(&stats.thread_commits),
        "{} queued appends took {} transactions: {stats:?}",
        TASKS - 1,
        stats.thread_commits
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_tracked_append_of_a_group_fails_with_already_tracked() -> TestResult {
    let store = SqliteStore::open_temporary().await?;
    let reaction = Checkpoint {
        position: Position(7),
        event_id: Some(EventId::new()),
        version: 1,
    };
    let tracked = |s: &str, version| {
        AppendRequest::to_stream(stream(s), ExpectedVersion::NoStream, vec![event(1)]).track(
            "shipping-saga",
            Checkpoint {
                version,
                ..reaction
            },
        )
    };
    let requests = [
        // Leads, and waits for the write lock while the others queue up.
        AppendRequest::to_stream(stream("lead-1"), ExpectedVersion::NoStream, vec![event(0)]),
        tracked("shipment-1", 1),
        tracked("shipment-2", 2),
    ];
    let blocker = rusqlite::Connection::open(store.path())?;
    blocker.execute_batch("BEGIN IMMEDIATE")?;
    let mut tasks = Vec::new();
    for request in requests {
        let store = store.clone();
        tasks.push(tokio::spawn(async move { store.append(request).await }));
        // Each queues before the next, so that the group keeps their order.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    blocker.execute_batch("COMMIT")?;
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await?);
    }
    let stats = store.writer_stats();
    assert_eq!(
        (stats.caller_commits, stats.thread_commits),
        (1, 1),
        "the tracked appends were not grouped: {stats:?}"
    );
    assert!(results[0].is_ok() && results[1].is_ok(), "{results:?}");
    assert!(
        matches!(
            &results[2],
            Err(AppendError::AlreadyTracked { name, stored: Position(7), requested: Position(7) })
                if name == "shipping-saga"
        ),
        "{:?}",
        results[2]
    );
    assert_eq!(
        store.load_checkpoint("shipping-saga").await?,
        Some(reaction)
    );
    assert!(store
        .read_stream_to_end(&stream("shipment-2"))
        .await?
        .is_empty());
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn caller_that_stops_waiting_mid_commit_still_hands_the_writer_on() -> TestResult {
    let store = SqliteStore::open_temporary().await?;
    // On this runtime a leading caller commits on the blocking pool: poll
    // the append once, so that it leads and waits, then give up on it.
    {
        let gone = stream("gone-1");
        let append = store.append_to_stream(&gone, ExpectedVersion::NoStream, vec![event(0)]);
        let mut append = std::pin::pin!(append);
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(
            append.as_mut().poll(&mut context).is_pending(),
            "the append finished before its first wait"
        );
    }
    // The next append is not stuck behind a leader that never came back.
    tokio::time::timeout(
        Duration::from_secs(10),
        store.append_to_stream(&stream("next-1"), ExpectedVersion::NoStream, vec![event(1)]),
    )
    .await??;
    // The abandoned append committed whole: its caller left, its commit did not.
    let mut head = store.watch_head();
    tokio::time::timeout(Duration::from_secs(10), head.wait_past(Position(1))).await??;
    let gone = store.read_stream_to_end(&stream("gone-1")).await?;
    assert_eq!(gone.len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relaxed_store_syncs_within_its_interval_once_appends_stop() -> TestResult {
    let store = SqliteStore::open_temporary_with(
        SqliteStore::options()
            .durability(Durability::Relaxed)
            .sync_interval(Duration::from_millis(20)),
    )
    .await?;
    for n in 0..10 {
        store
            .append_to_stream(&stream("relaxed-1"), ExpectedVersion::Any, vec![event(n)])
            .await?;
    }
    let mut synced = 0;
    for _ in 0..200 {
        synced = store.writer_stats().syncs;
        if synced > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(synced > 0, "no sync after the appends stopped");
    // A sync is owed only after unsynced commits: an idle store stays idle.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        store.writer_stats().syncs,
        synced,
        "an idle store kept syncing"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_durability_needs_no_sync_of_its_own() -> TestResult {
    let store = SqliteStore::open_temporary().await?;
    store
        .append_to_stream(&stream("full-1"), ExpectedVersion::Any, vec![event(0)])
        .await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(store.writer_stats().syncs, 0);
    Ok(())
}
