//! Checkpoints in a SQLite file: kept across reopening, refused once the
//! store is closed, rows changed behind the store's back reported as
//! corrupt, and every save all or nothing whatever step fails.

use std::error::Error;
use std::path::Path;

use annals_core::{
    BackendError, BackendErrorKind, Checkpoint, CheckpointStore, EventId, EventType, Position,
    SkippedEvent, Timestamp,
};
use annals_sqlite::{Access, FaultPlan, SqliteStore};

type TestResult = Result<(), Box<dyn Error>>;

fn checkpoint(position: u64) -> Checkpoint {
    Checkpoint {
        position: Position(position),
        event_id: Some(EventId::new()),
        version: 2,
    }
}

fn skipped(position: u64) -> SkippedEvent {
    SkippedEvent {
        position: Position(position),
        event_id: EventId::new(),
        event_type: EventType::new("Deposited").expect("valid"),
        error: "amount is negative".to_owned(),
        skipped_at: Timestamp::from_unix_micros(1_700_000_000_000_000),
    }
}

/// Asserts the error's kind, and that its message names the checkpoint.
fn assert_fails_with(
    result: Result<impl std::fmt::Debug, BackendError>,
    kind: BackendErrorKind,
    name: &str,
) {
    match result {
        Err(e) => {
            assert_eq!(e.kind, kind, "{e}");
            if kind == BackendErrorKind::Corrupt {
                assert!(e.message.contains(&format!("{name:?}")), "{e}");
            }
        }
        Ok(found) => panic!("expected {kind:?}, found {found:?}"),
    }
}

/// A store on a file with one checkpoint `balances` and its skipped
/// events, one row of which `corruption` changed while the store was
/// closed.
async fn store_with_a_corrupt_row(
    dir: &Path,
    corruption: &str,
) -> Result<SqliteStore, Box<dyn Error>> {
    let path = dir.join(format!("corrupt-{}.db", EventId::new()));
    let store = SqliteStore::open(&path).await?;
    store
        .save_checkpoint("balances", checkpoint(9), &[skipped(3), skipped(7)])
        .await?;
    store.close().await;
    rusqlite::Connection::open(&path)?.execute(corruption, [])?;
    Ok(SqliteStore::open(&path).await?)
}

#[tokio::test]
async fn checkpoint_and_skipped_events_survive_closing_and_reopening() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("checkpoints.db");
    let (saved, events) = (checkpoint(12), vec![skipped(4), skipped(9)]);
    let store = SqliteStore::open(&path).await?;
    store.save_checkpoint("balances", saved, &events).await?;
    store.close().await;
    drop(store);
    let store = SqliteStore::open(&path).await?;
    assert_eq!(store.load_checkpoint("balances").await?, Some(saved));
    assert_eq!(store.skipped_events("balances").await?, events);
    Ok(())
}

#[tokio::test]
async fn save_checkpoint_on_a_closed_store_fails_with_closed() -> TestResult {
    let store = SqliteStore::open_temporary().await?;
    store
        .save_checkpoint("balances", checkpoint(1), &[])
        .await?;
    store.close().await;
    let name = "balances";
    assert_fails_with(
        store
            .save_checkpoint(name, checkpoint(2), &[skipped(2)])
            .await,
        BackendErrorKind::Closed,
        name,
    );
    assert_fails_with(
        store.reset_checkpoint(name).await,
        BackendErrorKind::Closed,
        name,
    );
    assert_fails_with(
        store.load_checkpoint(name).await,
        BackendErrorKind::Closed,
        name,
    );
    assert_fails_with(
        store.skipped_events(name).await,
        BackendErrorKind::Closed,
        name,
    );
    Ok(())
}

#[tokio::test]
async fn save_checkpoint_on_a_read_only_store_fails_with_read_only() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("read-only.db");
    let saved = checkpoint(5);
    let store = SqliteStore::open(&path).await?;
    store.save_checkpoint("balances", saved, &[]).await?;
    store.close().await;
    let store = SqliteStore::options()
        .path(&path)
        .access(Access::ReadOnly)
        .open()
        .await?;
    assert_fails_with(
        store.save_checkpoint("balances", checkpoint(6), &[]).await,
        BackendErrorKind::ReadOnly,
        "balances",
    );
    assert_fails_with(
        store.reset_checkpoint("balances").await,
        BackendErrorKind::ReadOnly,
        "balances",
    );
    assert_eq!(store.load_checkpoint("balances").await?, Some(saved));
    Ok(())
}

#[tokio::test]
async fn save_checkpoint_past_the_largest_position_fails_with_other_and_writes_nothing(
) -> TestResult {
    let store = SqliteStore::open_temporary().await?;
    let past = Position(u64::try_from(i64::MAX)? + 1);
    let too_far = Checkpoint {
        position: past,
        ..checkpoint(0)
    };
    let mut too_far_skipped = skipped(0);
    too_far_skipped.position = past;
    for (checkpoint, skipped) in [(too_far, skipped(1)), (checkpoint(1), too_far_skipped)] {
        let err = store
            .save_checkpoint("balances", checkpoint, &[skipped])
            .await
            .unwrap_err();
        assert_eq!(err.kind, BackendErrorKind::Other, "{err}");
        assert!(err.message.contains(&past.to_string()), "{err}");
    }
    assert_eq!(store.load_checkpoint("balances").await?, None);
    assert_eq!(store.skipped_events("balances").await?, []);
    Ok(())
}

#[tokio::test]
async fn reads_of_rows_changed_behind_the_store_fail_with_corrupt() -> TestResult {
    let dir = tempfile::tempdir()?;
    let spoil_the_checkpoint = [
        "UPDATE checkpoints SET event_id = 'not-a-uuid'",
        "UPDATE checkpoints SET position = -1",
        "UPDATE checkpoints SET version = 4294967296",
        "UPDATE checkpoints SET position = 'nine'",
    ];
    let spoil_a_skipped_event = [
        "UPDATE skipped_events SET event_id = 'not-a-uuid' WHERE position = 7",
        "UPDATE skipped_events SET position = -7 WHERE position = 7",
        "UPDATE skipped_events SET event_type = ' Deposited' WHERE position = 7",
        "UPDATE skipped_events SET error = X'FFFE' WHERE position = 7",
    ];
    let corruptions = (spoil_the_checkpoint.iter().map(|c| (c, true)))
        .chain(spoil_a_skipped_event.iter().map(|c| (c, false)));
    for (corruption, checkpoint_spoilt) in corruptions {
        let store = store_with_a_corrupt_row(dir.path(), corruption).await?;
        let loaded = store.load_checkpoint("balances").await;
        let listed = store.skipped_events("balances").await;
        // The read of what was not changed still works.
        if checkpoint_spoilt {
            assert_fails_with(loaded, BackendErrorKind::Corrupt, "balances");
            assert_eq!(listed?.len(), 2, "{corruption}");
        } else {
            assert_fails_with(listed, BackendErrorKind::Corrupt, "balances");
            assert_eq!(
                loaded?.map(|c| c.position),
                Some(Position(9)),
                "{corruption}"
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_at_any_step_of_a_checkpoint_save_writes_all_or_nothing() -> TestResult {
    let mut k = 1;
    loop {
        assert!(k < 100, "the saves never ran without a fault");
        let plan = FaultPlan::fail_at_step(k);
        let store =
            SqliteStore::open_temporary_with(SqliteStore::options().fault_plan(plan.clone()))
                .await?;
        // One save alone, then three at once, so that they may share a
        // group commit.
        let names = ["alone", "together-1", "together-2", "together-3"];
        let mut answered = vec![(
            names[0],
            store
                .save_checkpoint(names[0], checkpoint(3), &[skipped(1), skipped(2)])
                .await,
        )];
        let tasks: Vec<_> = names[1..]
            .iter()
            .map(|&name| {
                let store = store.clone();
                tokio::spawn(async move {
                    let saved = store
                        .save_checkpoint(name, checkpoint(3), &[skipped(1), skipped(2)])
                        .await;
                    (name, saved)
                })
            })
            .collect();
        for task in tasks {
            answered.push(task.await?);
        }
        for (name, saved) in answered {
            let loaded = store.load_checkpoint(name).await?;
            let listed = store.skipped_events(name).await?;
            match saved {
                Ok(()) => assert!(
                    loaded.is_some() && listed.len() == 2,
                    "step {k}: {name}: a saved checkpoint is incomplete: {loaded:?}, {listed:?}"
                ),
                Err(e) => {
                    assert!(
                        matches!(
                            e.kind,
                            BackendErrorKind::Io | BackendErrorKind::OutcomeUnknown
                        ),
                        "step {k}: {name}: unexpected error {e}"
                    );
                    // A commit that failed may have reached the disk; what
                    // is there must still be whole.
                    assert!(
                        loaded.is_some() == (listed.len() == 2) && listed.len() != 1,
                        "step {k}: {name}: half a save is stored: {loaded:?}, {listed:?}"
                    );
                    if e.kind == BackendErrorKind::Io {
                        assert!(loaded.is_none(), "step {k}: {name}: a failed save wrote");
                    }
                }
            }
        }
        let fired = plan.steps_reached() >= k;
        store.close().await;
        if !fired {
            println!("the saves pass {} fault points", k - 1);
            return Ok(());
        }
        k += 1;
    }
}
