//! Failures: the checkpoint stops just before the event, waits return the
//! failure, the policies retry or skip and record, panics are contained,
//! and a log that lost commits is noticed.

use std::sync::atomic::Ordering;
use std::time::Duration;

use annals_core::testkit::bank::AccountEvent;
use annals_core::{
    BackendErrorKind, Checkpoint, CheckpointStore, EventId, InMemoryStore, Position,
};
use annals_projections::{
    Backoff, FailurePolicy, Found, ProjectionFailure, ProjectionState, Projections, RunError,
    WaitError,
};

use crate::fixtures::*;

/// Events: 3 deposits, the unlucky one, 2 more. Returns the unlucky one's
/// position and the head.
async fn log_with_an_unlucky_deposit(store: &InMemoryStore) -> (Position, Position) {
    busy_bank(store, 1, 2).await;
    let unlucky = record(store, "0", AccountEvent::Deposited { amount: UNLUCKY }).await;
    let head = busy_bank(store, 1, 2).await;
    (unlucky, head)
}

fn failed_at(error: &WaitError) -> Option<Position> {
    match error {
        WaitError::Failed(failure) => failure.position(),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_handler_stops_before_the_event_and_wait_returns_the_failure() -> TestResult {
    let (_dir, model, store) = setup();
    let (unlucky, head) = log_with_an_unlucky_deposit(&store).await;
    let switches = Switches::failing();
    let running = Projections::new(store.clone())
        .sqlite(
            &model,
            Balances::<1>::with(switches.clone(), FailurePolicy::Stop),
        )
        .start()?;
    let error = running.wait_for("balances", head).await.expect_err("fails");
    assert_eq!(failed_at(&error), Some(unlucky), "{error}");
    let WaitError::Failed(ProjectionFailure::Event {
        event_type,
        error: why,
        ..
    }) = &error
    else {
        panic!("not an event's failure: {error:?}");
    };
    assert_eq!(
        (event_type.as_str(), why.as_str()),
        ("Deposited", "thirteen is unlucky")
    );
    // The events before it are in the model; the checkpoint is just before it.
    assert_eq!(model_seen(&model), (1..unlucky.0).collect::<Vec<_>>());
    let status = &running.status()[0];
    assert_eq!(status.checkpoint, Position(unlucky.0 - 1));
    assert!(matches!(status.state, ProjectionState::Failed(_)));
    running.stop().await;

    // Fixed and restarted, it goes on from there.
    switches.fail.store(false, Ordering::SeqCst);
    let running = Projections::new(store.clone())
        .sqlite(&model, Balances::<1>::with(switches, FailurePolicy::Stop))
        .start()?;
    running.wait_for("balances", head).await?;
    assert_eq!(model_seen(&model), (1..=head.0).collect::<Vec<_>>());
    assert_eq!(model_balances(&model), folded_balances(&store).await);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_failure_stops_with_the_checkpoint_before_the_event() -> TestResult {
    let (_dir, _model, store) = setup();
    let (unlucky, head) = log_with_an_unlucky_deposit(&store).await;
    let seen = Seen::default();
    let mut positions = Positions::<false>::new(seen.clone());
    positions.switches = Switches::failing();
    let running = Projections::new(store.clone())
        .projection(positions)
        .start()?;
    let error = running
        .wait_for("positions", head)
        .await
        .expect_err("fails");
    assert_eq!(failed_at(&error), Some(unlucky));
    running.stop().await;
    let saved = store.load_checkpoint("positions").await?.expect("saved");
    assert_eq!(saved.position, Position(unlucky.0 - 1));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_handler_is_a_failure_not_a_crash() -> TestResult {
    let (_dir, model, store) = setup();
    busy_bank(&store, 1, 2).await;
    let cursed = record(&store, "0", AccountEvent::Deposited { amount: CURSED }).await;
    let running = Projections::new(store.clone())
        .sqlite(
            &model,
            Balances::<1>::with(Switches::panicking(), FailurePolicy::Stop),
        )
        .start()?;
    let error = running
        .wait_for("balances", cursed)
        .await
        .expect_err("fails");
    assert_eq!(failed_at(&error), Some(cursed));
    assert!(error.to_string().contains("sixty-six is cursed"), "{error}");
    // The runner itself is fine: status still answers, stop still works.
    assert_eq!(running.status()[0].checkpoint, Position(cursed.0 - 1));
    running.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_and_record_moves_past_the_event_and_lists_it() -> TestResult {
    let (_dir, model, store) = setup();
    let (unlucky, head) = log_with_an_unlucky_deposit(&store).await;
    let seen = Seen::default();
    let mut positions = Positions::<false>::new(seen.clone());
    positions.switches = Switches::failing();
    positions.policy = FailurePolicy::SkipAndRecord;
    let running = Projections::new(store.clone())
        .sqlite(
            &model,
            Balances::<1>::with(Switches::failing(), FailurePolicy::SkipAndRecord),
        )
        .projection(positions)
        .start()?;
    running.wait_idle().await?;
    for name in ["balances", "positions"] {
        let skipped = running.skipped_events(name).await?;
        assert_eq!(skipped.len(), 1, "{name}");
        assert_eq!(skipped[0].position, unlucky);
        assert_eq!(skipped[0].event_type.as_str(), "Deposited");
        assert_eq!(skipped[0].error, "thirteen is unlucky");
        assert_eq!(
            running
                .status()
                .iter()
                .find(|s| s.name == name)
                .map(|s| s.checkpoint),
            Some(head)
        );
    }
    let all_but_unlucky: Vec<u64> = (1..=head.0).filter(|p| *p != unlucky.0).collect();
    assert_eq!(model_seen(&model), all_but_unlucky);
    let seen: Vec<u64> = seen.lock().expect("lock").iter().map(|p| p.0).collect();
    assert_eq!(seen, all_but_unlucky);
    Ok(())
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn retry_tries_the_event_again_then_stops_after_the_last_attempt() -> TestResult {
    let (_dir, _model, store) = setup();
    let (unlucky, head) = log_with_an_unlucky_deposit(&store).await;
    let seen = Seen::default();
    let mut positions = Positions::<false>::new(seen.clone());
    positions.switches = Switches::failing();
    positions.policy = FailurePolicy::Retry {
        attempts: 3,
        backoff: Backoff {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(4),
        },
    };
    let running = Projections::new(store.clone())
        .projection(positions)
        .start()?;
    let started = tokio::time::Instant::now();
    let error = running
        .wait_for("positions", head)
        .await
        .expect_err("fails");
    assert_eq!(failed_at(&error), Some(unlucky));
    // Two pauses of at most 1 s and 2 s (full jitter) between three attempts.
    assert!(
        started.elapsed() <= Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // At least once: the events before it were handled on each attempt.
    let before = seen
        .lock()
        .expect("lock")
        .iter()
        .filter(|p| **p < unlucky)
        .count();
    assert_eq!(
        before as u64,
        unlucky.0 - 1,
        "the events before it go once, then only it is retried"
    );
    running.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_succeeds_once_the_cause_goes_away() -> TestResult {
    let (_dir, model, store) = setup();
    let (_unlucky, head) = log_with_an_unlucky_deposit(&store).await;
    let switches = Switches::failing();
    let policy = FailurePolicy::Retry {
        attempts: 1_000,
        backoff: Backoff {
            base: Duration::from_millis(1),
            cap: Duration::from_millis(5),
        },
    };
    let running = Projections::new(store.clone())
        .sqlite(&model, Balances::<1>::with(switches.clone(), policy))
        .start()?;
    // Wait until it is retrying, then lift the cause.
    let mut retrying = false;
    for _ in 0..1_000 {
        if matches!(running.status()[0].state, ProjectionState::Retrying { .. }) {
            retrying = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(retrying, "the projection never reported that it retries");
    switches.fail.store(false, Ordering::SeqCst);
    running.wait_for("balances", head).await?;
    assert_eq!(model_seen(&model), (1..=head.0).collect::<Vec<_>>());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_beyond_the_head_stops_the_projection_as_lost_commits() -> TestResult {
    let (_dir, _model, store) = setup();
    let head = busy_bank(&store, 1, 3).await;
    let ahead = Checkpoint {
        position: Position(head.0 + 5),
        event_id: Some(EventId::new()),
        version: 1,
    };
    store.save_checkpoint("positions", ahead, &[]).await?;
    let running = Projections::new(store.clone())
        .projection(Positions::<false>::new(Seen::default()))
        .start()?;
    let error = running
        .wait_for("positions", head)
        .await
        .expect_err("stopped");
    assert!(
        matches!(error, WaitError::Failed(ProjectionFailure::Run(_))),
        "{error}"
    );
    let status = &running.status()[0];
    let ProjectionState::Failed(ProjectionFailure::Run(run)) = &status.state else {
        panic!("not stopped for lost commits: {}", status.state);
    };
    assert!(
        matches!(&**run, RunError::LostCommits { position, found: Found::HeadBelow(h), .. }
            if *position == ahead.position && *h == head),
        "{run}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_whose_position_holds_another_event_stops_the_projection() -> TestResult {
    let (_dir, _model, store) = setup();
    let head = busy_bank(&store, 1, 3).await;
    let stale = Checkpoint {
        position: head,
        event_id: Some(EventId::new()),
        version: 1,
    };
    store.save_checkpoint("positions", stale, &[]).await?;
    let running = Projections::new(store.clone())
        .projection(Positions::<false>::new(Seen::default()))
        .start()?;
    let error = running
        .wait_for("positions", Position(head.0 + 1))
        .await
        .expect_err("stopped");
    let WaitError::Failed(ProjectionFailure::Run(run)) = &error else {
        panic!("{error:?}");
    };
    assert!(
        matches!(&**run, RunError::LostCommits { checkpoint_event, found: Found::OtherEvent(_), .. }
            if *checkpoint_event == stale.event_id),
        "{run}"
    );
    // A rebuild recovers.
    running.rebuild("positions").await?;
    running.wait_idle().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_read_model_file_fails_with_a_backend_error() -> TestResult {
    let (dir, _model, store) = setup();
    let not_a_db = dir.path().join("not-a-database.db");
    std::fs::write(&not_a_db, b"this is not an SQLite database, not at all")?;
    let head = busy_bank(&store, 1, 1).await;
    let running = Projections::new(store.clone())
        .sqlite(&not_a_db, Balances::<1>::new())
        .start()?;
    let error = running.wait_for("balances", head).await.expect_err("fails");
    let WaitError::Failed(ProjectionFailure::Run(run)) = &error else {
        panic!("{error:?}");
    };
    assert!(
        matches!(&**run, RunError::Backend { source, .. } if source.kind == BackendErrorKind::Corrupt),
        "{run}"
    );
    Ok(())
}

/// Works on whole batches: one prepared statement per batch.
struct BatchedBalances;

impl annals_projections::SqliteProjection for BatchedBalances {
    type Events = AccountEvent;
    const NAME: &'static str = "balances";

    fn create(
        &self,
        db: &rusqlite::Transaction<'_>,
    ) -> Result<(), annals_projections::HandlerError> {
        Balances::<1>::new().create(db)
    }

    fn handle(
        &mut self,
        _: &rusqlite::Transaction<'_>,
        _: &annals_projections::Envelope<AccountEvent>,
    ) -> Result<(), annals_projections::HandlerError> {
        unreachable!("every batch goes through handle_batch")
    }

    fn handle_batch(
        &mut self,
        db: &rusqlite::Transaction<'_>,
        events: &[annals_projections::Envelope<AccountEvent>],
    ) -> Result<(), annals_projections::BatchFailure> {
        let mut seen = db
            .prepare("INSERT INTO seen VALUES (?1, ?2, ?3)")
            .map_err(|e| annals_projections::BatchFailure {
                index: 0,
                error: e.into(),
            })?;
        for (index, event) in events.iter().enumerate() {
            let fail = |error: annals_projections::HandlerError| annals_projections::BatchFailure {
                index,
                error,
            };
            if event.event == (AccountEvent::Deposited { amount: UNLUCKY }) {
                return Err(fail("thirteen is unlucky".into()));
            }
            let position = i64::try_from(event.position.0).map_err(|e| fail(e.into()))?;
            let version = i64::try_from(event.version).map_err(|e| fail(e.into()))?;
            seen.execute(rusqlite::params![
                position,
                event.stream_id.as_str(),
                version
            ])
            .map_err(|e| fail(e.into()))?;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_handler_failure_names_its_event_and_keeps_the_events_before_it() -> TestResult {
    let (_dir, model, store) = setup();
    let (unlucky, head) = log_with_an_unlucky_deposit(&store).await;
    let running = Projections::new(store.clone())
        .sqlite(&model, BatchedBalances)
        .start()?;
    let error = running.wait_for("balances", head).await.expect_err("fails");
    assert_eq!(failed_at(&error), Some(unlucky), "{error}");
    assert_eq!(model_seen(&model), (1..unlucky.0).collect::<Vec<_>>());
    running.stop().await;
    Ok(())
}
