//! The head watch sees commits made elsewhere: by another process on the
//! same file, and, on a read-only store, by any writer at all.

use std::error::Error;
use std::process::{Command, Stdio};
use std::time::Duration;

use annals_core::prelude::*;
use annals_core::{ExpectedVersion, NewEvent, Payload, Position, StreamId};
use annals_sqlite::{Access, SqliteStore};

type TestResult = Result<(), Box<dyn Error>>;

const CHILD: &str = "ANNALS_HEAD_WATCH_CHILD";

/// Well past the default poll interval (50 ms), for a loaded machine.
const PATIENCE: Duration = Duration::from_secs(20);

fn event() -> Result<NewEvent, Box<dyn Error>> {
    Ok(NewEvent::new("Pinged", 1, Payload::from_json("{}")?)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_processes_commit_wakes_a_watcher_here() -> TestResult {
    if let Ok(path) = std::env::var(CHILD) {
        // The other process: one append, then exit.
        let store = SqliteStore::open(&path).await?;
        store
            .append_to_stream(
                &StreamId::new("ping-1")?,
                ExpectedVersion::NoStream,
                vec![event()?],
            )
            .await?;
        store.close().await;
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("shared.db");
    let store = SqliteStore::open(&path).await?;
    let mut head = store.watch_head();
    assert_eq!(head.current(), Position::START);
    let child = Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "another_processes_commit_wakes_a_watcher_here",
            "--nocapture",
        ])
        .env(CHILD, &path)
        .stdout(Stdio::null())
        .spawn()?;
    let woke = tokio::time::timeout(PATIENCE, head.wait_past(Position::START)).await;
    let status = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await??
        .status;
    assert!(status.success(), "the other process failed");
    assert_eq!(woke??, Position(1), "the watcher woke at the wrong head");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_stores_watch_moves_with_commits_of_a_writer() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("events.db");
    let writer = SqliteStore::open(&path).await?;
    let reader = SqliteStore::options()
        .path(&path)
        .access(Access::ReadOnly)
        .head_poll_interval(Duration::from_millis(10))
        .open()
        .await?;
    let mut head = reader.watch_head();
    for n in 1..=3u64 {
        writer
            .append_to_stream(
                &StreamId::new("ping-1")?,
                ExpectedVersion::Any,
                vec![event()?],
            )
            .await?;
        let seen = tokio::time::timeout(PATIENCE, head.wait_past(Position(n - 1))).await??;
        assert!(seen >= Position(n), "the read-only watch shows {seen}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_store_ends_waits_on_its_head() -> TestResult {
    let store = SqliteStore::open_temporary().await?;
    let mut head = store.watch_head();
    let waiter = tokio::spawn(async move { head.wait_past(Position::START).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    store.close().await;
    let result = tokio::time::timeout(PATIENCE, waiter).await??;
    assert!(result.is_err(), "a wait outlived the store: {result:?}");
    Ok(())
}
