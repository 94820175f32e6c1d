//! Catching up, following live commits, waits and status.

use std::time::Duration;

use annals_core::testkit::bank::AccountEvent;
use annals_core::{Checkpoint, CheckpointStore, EventStore, Position};
use annals_projections::{
    Envelope, HandlerError, Projection, ProjectionState, Projections, StartError, WaitError,
};

use crate::fixtures::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_model_catches_up_then_follows_live_commits() -> TestResult {
    let (_dir, model, store) = setup();
    busy_bank(&store, 5, 200).await;
    let running = Projections::new(store.clone())
        .batch_size(30)
        .sqlite(&model, Balances::<1>::new())
        .start()?;
    running.wait_idle().await?;
    assert_eq!(model_balances(&model), folded_balances(&store).await);

    // Live: a commit after catching up shows up in the model.
    let position = record(&store, "0", AccountEvent::Deposited { amount: 1_000 }).await;
    running.wait_for("balances", position).await?;
    assert_eq!(model_balances(&model), folded_balances(&store).await);
    let seen = model_seen(&model);
    assert_eq!(
        seen,
        (1..=position.0).collect::<Vec<_>>(),
        "each event once"
    );

    let status = &running.status()[0];
    assert_eq!(
        (status.checkpoint, status.head, status.lag),
        (position, position, 0)
    );
    assert!(
        matches!(status.state, ProjectionState::Live),
        "{}",
        status.state
    );
    running.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_sqlite_model_resumes_from_its_checkpoint_without_repeating() -> TestResult {
    let (_dir, model, store) = setup();
    busy_bank(&store, 3, 50).await;
    let running = Projections::new(store.clone())
        .sqlite(&model, Balances::<1>::new())
        .start()?;
    running.wait_idle().await?;
    running.stop().await;

    let head = busy_bank(&store, 3, 50).await;
    let running = Projections::new(store.clone())
        .sqlite(&model, Balances::<1>::new())
        .start()?;
    running.wait_for("balances", head).await?;
    // `seen` has a primary key: a repeated event would have failed a batch.
    assert_eq!(model_seen(&model), (1..=head.0).collect::<Vec<_>>());
    assert_eq!(model_balances(&model), folded_balances(&store).await);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_projection_keeps_its_checkpoint_in_the_event_store() -> TestResult {
    let (_dir, _model, store) = setup();
    let first = busy_bank(&store, 2, 20).await;
    let seen = Seen::default();
    let running = Projections::new(store.clone())
        .batch_size(7)
        .projection(Positions::<false>::new(seen.clone()))
        .start()?;
    running.wait_for("positions", first).await?;
    running.stop().await;
    let saved = store.load_checkpoint("positions").await?;
    assert_eq!(saved.map(|c| c.position), Some(first));

    // A new runner goes on from the stored checkpoint.
    let second = busy_bank(&store, 2, 20).await;
    let running = Projections::new(store.clone())
        .projection(Positions::<false>::new(seen.clone()))
        .start()?;
    running.wait_for("positions", second).await?;
    running.stop().await;
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen, (1..=second.0).map(Position).collect::<Vec<_>>());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_projection_replays_the_log_on_each_start() -> TestResult {
    let (_dir, _model, store) = setup();
    let head = busy_bank(&store, 2, 10).await;
    for _ in 0..2 {
        let seen = Seen::default();
        let running = Projections::new(store.clone())
            .projection(Positions::<true>::new(seen.clone()))
            .start()?;
        running.wait_idle().await?;
        running.stop().await;
        assert_eq!(seen.lock().expect("lock").len() as u64, head.0);
    }
    assert_eq!(
        store.load_checkpoint("positions").await?,
        None,
        "never stored"
    );
    Ok(())
}

/// Reads only deposits of one account category... and nothing else: a
/// filtered projection's checkpoint passes the events it does not read.
struct Nothing;

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize, annals_core::DomainEvent)]
enum ParcelEvent {
    ParcelShipped { to: String },
}

#[async_trait::async_trait]
impl Projection for Nothing {
    type Events = ParcelEvent;
    const NAME: &'static str = "parcels";
    async fn handle(&mut self, _: &Envelope<ParcelEvent>) -> Result<(), HandlerError> {
        Err("no parcel was ever shipped".into())
    }
    async fn reset(&mut self) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_returns_when_a_filtered_projection_read_past_events_it_skips() -> TestResult {
    let (_dir, _model, store) = setup();
    let head = busy_bank(&store, 2, 30).await;
    let running = Projections::new(store.clone())
        .projection(Nothing)
        .start()?;
    running.wait_for("parcels", head).await?;
    running.stop().await;
    // The range it read through without a match is saved when it stops.
    let saved = store.load_checkpoint("parcels").await?;
    assert_eq!(saved.map(|c| c.position), Some(head));
    Ok(())
}

/// Never gets anywhere: each event takes a long pause.
struct Slow;

#[async_trait::async_trait]
impl Projection for Slow {
    type Events = AccountEvent;
    const NAME: &'static str = "slow";
    const IN_MEMORY: bool = true;
    async fn handle(&mut self, _: &Envelope<AccountEvent>) -> Result<(), HandlerError> {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(())
    }
    async fn reset(&mut self) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_projection_never_stalls_the_others() -> TestResult {
    let (_dir, model, store) = setup();
    let head = busy_bank(&store, 2, 30).await;
    let running = Projections::new(store.clone())
        .projection(Slow)
        .sqlite(&model, Balances::<1>::new())
        .start()?;
    running.wait_for("balances", head).await?;
    let error = running
        .wait_for_within("slow", head, Duration::from_millis(50))
        .await
        .expect_err("the slow one is stuck");
    assert!(
        matches!(error, WaitError::TimedOut { projection: "slow", position, .. } if position == head),
        "{error:?}"
    );
    for waited in [
        running.wait_idle_within(Duration::from_millis(30)).await,
        running.wait_settled_within(Duration::from_millis(30)).await,
    ] {
        assert!(
            matches!(
                waited,
                Err(WaitError::TimedOut {
                    projection: "slow",
                    ..
                })
            ),
            "{waited:?}"
        );
    }
    // Stopping does not wait for the stuck event: an at-least-once
    // projection handles it again after a restart.
    running.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_fail_with_typed_errors_for_unknown_and_stopped_projections() -> TestResult {
    let (_dir, model, store) = setup();
    let head = busy_bank(&store, 1, 3).await;
    let running = Projections::new(store.clone())
        .sqlite(&model, Balances::<1>::new())
        .start()?;
    let unknown = running.wait_for("nope", head).await.expect_err("unknown");
    assert!(matches!(unknown, WaitError::UnknownProjection { ref name } if name == "nope"));
    running.wait_idle().await?;
    let beyond = Position(head.0 + 10);
    let timed_out = running
        .wait_for_within("balances", beyond, Duration::from_millis(20))
        .await
        .expect_err("never gets there");
    assert!(matches!(timed_out, WaitError::TimedOut { checkpoint, .. } if checkpoint == head));
    Ok(())
}

#[tokio::test]
async fn projections_with_bad_names_or_settings_fail_to_start() {
    struct BadName;
    #[async_trait::async_trait]
    impl Projection for BadName {
        type Events = AccountEvent;
        const NAME: &'static str = "bad name/with slash";
        async fn handle(&mut self, _: &Envelope<AccountEvent>) -> Result<(), HandlerError> {
            Ok(())
        }
        async fn reset(&mut self) -> Result<(), HandlerError> {
            Ok(())
        }
    }
    let store = annals_core::InMemoryStore::new();
    let bad = Projections::new(store.clone()).projection(BadName).start();
    assert!(matches!(bad, Err(StartError::InvalidName { .. })));

    let twice = Projections::new(store.clone())
        .projection(Positions::<true>::new(Seen::default()))
        .projection(Positions::<false>::new(Seen::default()))
        .start();
    assert!(matches!(twice, Err(StartError::DuplicateName { ref name }) if name == "positions"));

    let zero = Projections::new(store)
        .batch_size(0)
        .projection(Positions::<true>::new(Seen::default()))
        .start();
    assert!(matches!(
        zero,
        Err(StartError::InvalidOptions {
            setting: "batch_size",
            ..
        })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_runner_stops_its_projections_and_keeps_checkpoints() -> TestResult {
    let (_dir, _model, store) = setup();
    let head = busy_bank(&store, 2, 10).await;
    let seen = Seen::default();
    let running = Projections::new(store.clone())
        .projection(Positions::<false>::new(seen.clone()))
        .start()?;
    running.wait_for("positions", head).await?;
    drop(running);
    let saved: Option<Checkpoint> = store.load_checkpoint("positions").await?;
    assert_eq!(saved.map(|c| c.position), Some(head));
    // Nothing follows any more: a new commit is not handled.
    record(&store, "0", AccountEvent::Deposited { amount: 1 }).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(seen.lock().expect("lock").len() as u64, head.0);
    assert_eq!(store.head().await?, Position(head.0 + 1));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_model_may_share_the_event_store_file() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("events.db");
    let store = annals_sqlite::SqliteStore::open(&path).await?;
    busy_bank(&store, 3, 40).await;
    let running = Projections::new(store.clone())
        .sqlite(&path, Balances::<1>::new())
        .start()?;
    // Appends and batches take turns on the one file.
    let head = busy_bank(&store, 3, 40).await;
    running.wait_for("balances", head).await?;
    running.stop().await;
    assert_eq!(model_balances(&path), folded_balances(&store).await);
    assert_eq!(model_seen(&path), (1..=head.0).collect::<Vec<_>>());
    // The store still opens the file as its own.
    store.close().await;
    let reopened = annals_sqlite::SqliteStore::open(&path).await?;
    assert_eq!(reopened.head().await?, head);
    Ok(())
}
