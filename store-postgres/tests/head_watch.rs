//! The head watch across processes: a commit anywhere wakes a waiter by
//! NOTIFY, long before the poll would; a lost listening connection is
//! opened again, and commits made while it was down still wake waiters; a
//! follower that waits on the watch loses nothing across such losses; and
//! closing or dropping the store ends every wait.
//!
//! The watched stores here poll the head only every minute, so that a
//! wake-up within the tests' patience can only come from a notification or
//! from the read the listener makes when it (re)connects.

mod common;

use std::time::Duration;

use annals_core::prelude::*;
use annals_core::{ExpectedVersion, NewEvent, Payload, Position, StreamId};
use annals_postgres::testing::{url_or_skip, Schemas};
use annals_postgres::PostgresStore;
use common::proxy::Proxy;
use common::{
    assert_saw_the_whole_log, eventually, follow, raw, spawn_child, terminate_backend_of,
    TestResult, Waiting, PATIENCE,
};
use tokio::sync::watch;

const CHILD: &str = "ANNALS_HEAD_WATCH_SCHEMA";

/// Far longer than any wait here: a waiter that wakes was not woken by a poll.
const NO_POLL: Duration = Duration::from_secs(60);

fn event() -> TestResult<NewEvent> {
    Ok(NewEvent::new("Pinged", 1, Payload::from_json("{}")?)?)
}

async fn ping(store: &PostgresStore) -> TestResult<Position> {
    let outcome = store
        .append_to_stream(
            &StreamId::new("ping-1")?,
            ExpectedVersion::Any,
            vec![event()?],
        )
        .await?;
    Ok(outcome
        .last_position()
        .ok_or("an append recorded nothing")?)
}

/// Waits until the store's listener has connected `n` times in all.
async fn listener_connected(store: &PostgresStore, n: u64) -> TestResult {
    eventually(&format!("the listener has connected {n} times"), || {
        let connects = store.listener_connects();
        async move { Ok(connects >= n) }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_by_another_process_and_another_store_wake_a_watcher_by_notification() -> TestResult
{
    let test = "commits_by_another_process_and_another_store_wake_a_watcher_by_notification";
    let Some(url) = url_or_skip(test) else {
        return Ok(());
    };
    if let Ok(schema) = std::env::var(CHILD) {
        // The other process: one append, then exit.
        let store = PostgresStore::options()
            .url(url)
            .schema(schema)
            .connect()
            .await?;
        ping(&store).await?;
        store.close().await;
        return Ok(());
    }
    let schemas = Schemas::new(url, "notify");
    let watched = schemas
        .open(schemas.options().head_poll_interval(NO_POLL))
        .await?;
    let schema = watched.schema().to_owned();
    let mut head = watched.watch_head();
    assert_eq!(head.current(), Position::START);
    listener_connected(&watched, 1).await?;

    let child = spawn_child(test, CHILD, &schema, &[])?;
    let woke = tokio::time::timeout(PATIENCE, head.wait_past(Position::START)).await;
    let status = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await??
        .status;
    assert!(status.success(), "the other process failed");
    assert_eq!(woke??, Position(1), "the watcher woke at the wrong head");

    let other = schemas.open(schemas.options().schema(&schema)).await?;
    for _ in 0..3 {
        let before = head.current();
        let committed = ping(&other).await?;
        let seen = tokio::time::timeout(PATIENCE, head.wait_past(before)).await??;
        assert_eq!(seen, committed, "the watcher woke at the wrong head");
    }
    assert_eq!(watched.listener_connects(), 1, "the listener reconnected");
    schemas.drop_all().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_listener_reconnects_and_wakes_waiters_for_commits_made_while_it_was_down(
) -> TestResult {
    let test = "a_terminated_listener_reconnects_and_wakes_waiters";
    let Some(url) = url_or_skip(test) else {
        return Ok(());
    };
    let admin = raw(&url).await?;
    let schemas = Schemas::new(url.clone(), "relisten");
    let writer = schemas.store().await?;
    let schema = writer.schema().to_owned();

    // Terminated by the server: the listener notices and connects again.
    let watched = schemas
        .open(
            schemas
                .options()
                .schema(&schema)
                .head_poll_interval(NO_POLL),
        )
        .await?;
    let mut head = watched.watch_head();
    for round in 1..=3u64 {
        listener_connected(&watched, round).await?;
        terminate_backend_of(&admin, "annals-listener", &schema).await?;
        let committed = ping(&writer).await?;
        let seen =
            tokio::time::timeout(PATIENCE, head.wait_past(Position(committed.0 - 1))).await??;
        assert_eq!(
            seen, committed,
            "round {round}: the watcher woke at the wrong head"
        );
        listener_connected(&watched, round + 1).await?;
    }

    // Down for certain while the commits are made: a proxy that closes the
    // listener's connection and refuses new ones until the commits are in.
    let Some((proxy, through_proxy)) = Proxy::in_front_of(&url).await? else {
        eprintln!("the test server is not on TCP: skipping the rest of {test}");
        schemas.drop_all().await;
        return Ok(());
    };
    let behind_proxy = schemas
        .open(
            schemas
                .options()
                .url(through_proxy)
                .schema(&schema)
                .head_poll_interval(NO_POLL),
        )
        .await?;
    let mut head = behind_proxy.watch_head();
    listener_connected(&behind_proxy, 1).await?;
    let before = head.current();
    proxy.go_down();
    let mut committed = before;
    for _ in 0..3 {
        committed = ping(&writer).await?;
    }
    assert_eq!(
        behind_proxy.listener_connects(),
        1,
        "the listener connected while the server was unreachable"
    );
    proxy.come_up();
    let seen = tokio::time::timeout(PATIENCE, head.wait_past(before)).await??;
    assert_eq!(seen, committed, "the watcher woke at the wrong head");
    assert!(behind_proxy.listener_connects() >= 2);
    behind_proxy.close().await;
    schemas.drop_all().await;
    drop(proxy);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_waiting_on_the_watch_loses_nothing_while_its_listener_is_terminated(
) -> TestResult {
    let Some(url) = url_or_skip("a_follower_waiting_on_the_watch_loses_nothing") else {
        return Ok(());
    };
    let admin = raw(&url).await?;
    let schemas = Schemas::new(url.clone(), "follow_relisten");
    let writer = schemas.store().await?;
    let schema = writer.schema().to_owned();
    let watched = schemas
        .open(
            schemas
                .options()
                .schema(&schema)
                .head_poll_interval(NO_POLL),
        )
        .await?;
    let (end, until) = watch::channel(None::<Position>);
    let follower = tokio::spawn(follow(watched.clone(), 10, Waiting::Watches, until));

    let appending = tokio::spawn({
        let writer = writer.clone();
        async move {
            for n in 0..60u64 {
                let stream = StreamId::new(format!("followed-{}", n % 4))?;
                let events = (0..=n % 3)
                    .map(|_| event())
                    .collect::<TestResult<Vec<_>>>()?;
                writer
                    .append_to_stream(&stream, ExpectedVersion::Any, events)
                    .await?;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            TestResult::Ok(())
        }
    });
    for round in 1..=3u64 {
        listener_connected(&watched, round).await?;
        terminate_backend_of(&admin, "annals-listener", &schema).await?;
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    appending.await??;
    let log = annals_core::testkit::read_log(&writer).await?;
    end.send_replace(log.last().map(|e| e.position));
    let seen = tokio::time::timeout(PATIENCE, follower)
        .await
        .map_err(|_| "the follower never caught up with the head")??
        .map_err(|broken| format!("the follower: {broken}"))?;
    assert_saw_the_whole_log("the follower", &seen, &log);
    assert!(watched.listener_connects() >= 4);
    schemas.drop_all().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_store_ends_waits_on_its_head_with_store_closed() -> TestResult {
    let Some(url) = url_or_skip("closing_the_store_ends_waits_on_its_head") else {
        return Ok(());
    };
    let schemas = Schemas::new(url, "close_watch");
    let store = schemas.store().await?;
    let mut head = store.watch_head();
    listener_connected(&store, 1).await?;
    let waiter = tokio::spawn(async move { head.wait_past(Position::START).await });
    store.close().await;
    let result = tokio::time::timeout(PATIENCE, waiter).await??;
    assert!(
        result.is_err(),
        "a wait outlived the closed store: {result:?}"
    );
    assert!(
        store.watch_head().wait_past(Position::START).await.is_err(),
        "a new wait on a closed store did not end"
    );
    schemas.drop_all().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_every_clone_of_the_store_ends_waits_on_its_head() -> TestResult {
    let Some(url) = url_or_skip("dropping_every_clone_of_the_store_ends_waits_on_its_head") else {
        return Ok(());
    };
    let schemas = Schemas::new(url, "drop_watch");
    // This store only owns the schema; the dropped one is not kept by
    // `schemas`.
    let owner = schemas.store().await?;
    let dropped = schemas.options().schema(owner.schema()).connect().await?;
    ping(&dropped).await?;
    let mut head = dropped.watch_head();
    listener_connected(&dropped, 1).await?;
    let waiter = tokio::spawn(async move { head.wait_past(Position(1)).await });
    drop(dropped);
    let result = tokio::time::timeout(PATIENCE, waiter).await??;
    assert!(
        result.is_err(),
        "a wait outlived every clone of its store: {result:?}"
    );
    schemas.drop_all().await;
    Ok(())
}
