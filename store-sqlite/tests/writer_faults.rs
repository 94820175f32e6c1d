//! The writer never wedges: a caller that leads gives the connection back on
//! every path (its commit dropped unrun, a runtime that refuses to block in
//! place, a runtime dropped mid-commit), and relaxed durability's sync
//! neither spins nor keeps the store from closing when it cannot be made.

use std::error::Error;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use annals_core::prelude::*;
use annals_core::{ExpectedVersion, NewEvent, Payload, StreamId};
use annals_sqlite::{Durability, FaultPlan, SqliteStore};

type TestResult = Result<(), Box<dyn Error>>;

fn event(n: usize) -> NewEvent {
    let payload = Payload::from_json(format!("{{\"n\":{n}}}")).expect("valid JSON");
    NewEvent::new("Happened", 1, payload).expect("valid event type")
}

fn stream(id: &str) -> StreamId {
    StreamId::new(id).expect("valid stream id")
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Whether dropping `store` returns within `patience` (the drop runs on a
/// thread of its own, which is leaked if it hangs).
fn drop_returns_within(store: SqliteStore, patience: Duration) -> bool {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        drop(store);
        let _ = done.send(());
    });
    finished.recv_timeout(patience).is_ok()
}

/// An append on a multi-threaded runtime, driven by `Runtime::block_on`
/// inside a `LocalSet` (tokio's documented way to run !Send futures there):
/// `Handle::runtime_flavor()` says MultiThread, but tokio forbids
/// `block_in_place` in that context and panics. The panic leaves
/// `Leader::Caller` set for good.
#[test]
fn append_in_a_local_set_on_a_multi_thread_runtime_is_served_and_the_store_closes() -> TestResult {
    let rt = multi_thread();
    let store = rt.block_on(SqliteStore::open_temporary())?;
    let local = tokio::task::LocalSet::new();
    let inside = store.clone();
    let first = std::panic::catch_unwind(AssertUnwindSafe(|| {
        rt.block_on(local.run_until(async move {
            inside
                .append_to_stream(&stream("local-1"), ExpectedVersion::Any, vec![event(0)])
                .await
        }))
    }));
    let panicked = first.is_err();
    // From an ordinary task, afterwards.
    let next = rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(3),
            store.append_to_stream(&stream("next-1"), ExpectedVersion::Any, vec![event(1)]),
        )
        .await
    });
    let served = matches!(next, Ok(Ok(_)));
    let closed = drop_returns_within(store, Duration::from_secs(3));
    assert!(
        !panicked && served && closed,
        "append in LocalSet panicked: {panicked}; a later append was served: {served}; \
         drop returned: {closed}"
    );
    Ok(())
}

/// A leading caller whose blocking commit is never run (tokio drops a
/// `spawn_blocking` closure when the runtime's blocking pool is shutting
/// down) never gives leadership back: every later append waits forever,
/// and so does dropping the store.
#[test]
fn leader_whose_blocking_commit_is_dropped_unrun_hands_the_writer_on() -> TestResult {
    let rt = multi_thread();
    let store = rt.block_on(SqliteStore::open_temporary())?;
    let dead = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = dead.handle().clone();
    drop(dead); // its blocking pool is shut down
    let first = {
        let _entered = handle.enter();
        let lost = stream("lost-1");
        let append = store.append_to_stream(&lost, ExpectedVersion::Any, vec![event(0)]);
        let mut append = std::pin::pin!(append);
        let mut context = Context::from_waker(Waker::noop());
        let mut polled = Poll::Pending;
        for _ in 0..10 {
            polled = append.as_mut().poll(&mut context);
            if polled.is_ready() {
                break;
            }
        }
        polled
    };
    // Its commit was dropped unrun; the job went back in line and the
    // writer thread commits it: the append is pending or done, not lost.
    assert!(
        matches!(first, Poll::Pending | Poll::Ready(Ok(_))),
        "the first append failed: {first:?}"
    );
    let next = rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(3),
            store.append_to_stream(&stream("next-1"), ExpectedVersion::Any, vec![event(1)]),
        )
        .await
    });
    let served = matches!(next, Ok(Ok(_)));
    let kept = rt
        .block_on(store.read_stream_to_end(&stream("lost-1")))?
        .len();
    let closed = drop_returns_within(store, Duration::from_secs(3));
    assert!(
        served && kept == 1 && closed,
        "a later append was served: {served}; the abandoned one was stored: {kept}; \
         drop returned: {closed}"
    );
    Ok(())
}

/// CPU time (user + system, in clock ticks) of this process's writer threads.
fn writer_thread_ticks() -> u64 {
    let mut ticks = 0;
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("annals-sqlite-w") {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the ")" that ends the name: utime is the 12th, stime the 13th.
        let after = stat.rsplit(')').next().unwrap_or("");
        let fields: Vec<&str> = after.split_whitespace().collect();
        let field = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        ticks += field(11) + field(12);
    }
    ticks
}

/// Relaxed durability: once a sync is owed and cannot be made (here the
/// write connection was lost to a failed commit and cannot be reopened),
/// the writer thread retries it in a tight loop, holding `Leader::Thread`
/// for good, and close/drop never return.
#[test]
fn relaxed_sync_that_keeps_failing_neither_spins_nor_blocks_closing() -> TestResult {
    let rt = multi_thread();
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("events.db");
    let store = rt.block_on(
        SqliteStore::options()
            .path(&path)
            .durability(Durability::Relaxed)
            .sync_interval(Duration::from_millis(300))
            // A lone append reaches: Begin (1), Insert (2), Commit (3).
            .fault_plan(FaultPlan::fail_at_step(3))
            .open(),
    )?;
    let failed = rt.block_on(store.append_to_stream(
        &stream("relaxed-1"),
        ExpectedVersion::Any,
        vec![event(0)],
    ));
    assert!(failed.is_err(), "setup: the commit should have failed");
    // The write connection is gone and a sync is owed; now the file cannot
    // be reopened (moved away, a lost mount, EMFILE...).
    std::fs::rename(&path, dir.path().join("moved.db"))?;
    std::thread::sleep(Duration::from_millis(600)); // the sync is due
    let before = writer_thread_ticks();
    std::thread::sleep(Duration::from_secs(1));
    let burned = writer_thread_ticks() - before; // clock ticks: 100 per CPU second
    let started = Instant::now();
    let closed = drop_returns_within(store, Duration::from_secs(3));
    assert!(
        closed && burned < 20,
        "drop returned: {closed} (after {:?}); the writer thread used {burned}/100 of a CPU \
         second while idle",
        started.elapsed()
    );
    Ok(())
}

/// The same loop without fault injection: another connection holds the
/// write lock. Close then retries the owed sync every busy timeout for as
/// long as the lock is held, instead of giving up (or making its one
/// final attempt) and returning.
#[test]
fn relaxed_close_while_another_connection_holds_the_write_lock_returns() -> TestResult {
    let rt = multi_thread();
    let dir = tempfile::tempdir()?;
    let store = rt.block_on(
        SqliteStore::options()
            .path(dir.path().join("events.db"))
            .durability(Durability::Relaxed)
            .sync_interval(Duration::from_millis(100))
            .busy_timeout(Duration::from_millis(50))
            .open(),
    )?;
    rt.block_on(store.append_to_stream(
        &stream("relaxed-1"),
        ExpectedVersion::Any,
        vec![event(0)],
    ))?;
    let blocker = rusqlite::Connection::open(store.path())?;
    blocker.execute_batch("BEGIN IMMEDIATE")?;
    std::thread::sleep(Duration::from_millis(300)); // the sync is due, and fails
    let closed = drop_returns_within(store, Duration::from_secs(3));
    blocker.execute_batch("COMMIT")?;
    assert!(
        closed,
        "drop did not return while another connection held the lock"
    );
    Ok(())
}

/// The same wedge without any contrivance: a current-thread runtime is
/// dropped (a test ends, a server shuts down) just after a spawned task's
/// append took leadership and handed its commit to an idle blocking thread
/// that has not woken yet. The pool's shutdown drops the queued closure.
/// Probabilistic: tries 200 times (the wedge, when it was possible, came
/// within the first few dozen).
#[test]
fn runtime_dropped_while_a_leaders_commit_is_queued_leaves_the_writer_serving() -> TestResult {
    let rt = multi_thread();
    let store = rt.block_on(SqliteStore::open_temporary())?;
    for attempt in 0..200 {
        let short = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let inner = store.clone();
        short.block_on(async move {
            // An idle blocking thread, so that the commit is handed to it
            // with a notify rather than a new thread.
            let _ = tokio::task::spawn_blocking(|| ()).await;
            tokio::spawn(async move {
                let s = stream(&format!("race-{attempt}"));
                let _ = inner
                    .append_to_stream(&s, ExpectedVersion::Any, vec![event(attempt)])
                    .await;
            });
            tokio::task::yield_now().await;
        });
        drop(short);
        let next = rt.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(3),
                store.append_to_stream(&stream("probe-1"), ExpectedVersion::Any, vec![event(0)]),
            )
            .await
        });
        if !matches!(next, Ok(Ok(_))) {
            // Dropping the store would hang too: leak it.
            std::mem::forget(store);
            panic!("attempt {attempt}: the writer is wedged after a runtime was dropped: {next:?}");
        }
    }
    Ok(())
}

/// `sync_interval` is checked only for zero; a very long one ("sync
/// rarely") overflows `Instant + Duration` in `sync_due`, which panics on
/// the writer thread at the first relaxed commit. The dead thread is then
/// handed queued appends that it never answers.
#[test]
fn relaxed_store_with_a_very_long_sync_interval_answers_queued_appends() -> TestResult {
    let rt = multi_thread();
    let dir = tempfile::tempdir()?;
    let store = rt.block_on(
        SqliteStore::options()
            .path(dir.path().join("events.db"))
            .durability(Durability::Relaxed)
            .sync_interval(Duration::MAX)
            .busy_timeout(Duration::from_secs(2))
            .open(),
    )?;
    rt.block_on(store.append_to_stream(&stream("a-1"), ExpectedVersion::Any, vec![event(0)]))?;
    std::thread::sleep(Duration::from_millis(100)); // the writer thread has panicked
                                                    // Make the next append lead for a while, so that another one queues.
    let blocker = rusqlite::Connection::open(store.path())?;
    blocker.execute_batch("BEGIN IMMEDIATE")?;
    let leader = {
        let store = store.clone();
        rt.spawn(async move {
            store
                .append_to_stream(&stream("b-1"), ExpectedVersion::Any, vec![event(1)])
                .await
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let queued = {
        let store = store.clone();
        rt.spawn(async move {
            store
                .append_to_stream(&stream("c-1"), ExpectedVersion::Any, vec![event(2)])
                .await
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    blocker.execute_batch("COMMIT")?;
    let led = rt.block_on(leader)?;
    let answered =
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(3), queued).await });
    assert!(led.is_ok(), "setup: the leading append failed: {led:?}");
    assert!(
        matches!(answered, Ok(Ok(Ok(_)))),
        "the queued append was never answered: {answered:?}"
    );
    Ok(())
}
