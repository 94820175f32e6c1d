//! Rebuilds: on a version change or on request, into a shadow database
//! while the old model serves, swapped in at once; interrupted rebuilds go
//! on where they stopped.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use annals_core::testkit::bank::AccountEvent;
use annals_core::Position;
use annals_projections::{FailurePolicy, ProjectionState, Projections};

use crate::fixtures::*;

/// The versions that built the model's rows, lowest and highest.
fn built_by(path: &Path) -> (i64, i64) {
    let db = rusqlite::Connection::open(path).expect("open");
    db.query_row(
        "SELECT MIN(built_by), MAX(built_by) FROM balances",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .expect("query")
}

async fn build_v1(store: &annals_core::InMemoryStore, model: &Path) -> TestResult {
    let running = Projections::new(store.clone())
        .sqlite(model, Balances::<1>::new())
        .start()?;
    running.wait_idle().await?;
    running.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_bump_rebuilds_a_model_equal_to_the_live_built_one() -> TestResult {
    let (_dir, model, store) = setup();
    busy_bank(&store, 7, 300).await;
    build_v1(&store, &model).await?;
    let live_built = model_balances(&model);

    let running = Projections::new(store.clone())
        .batch_size(25)
        .sqlite(&model, Balances::<2>::new())
        .start()?;
    // Idle: the rebuild is swapped in and the model is at the head.
    running.wait_idle().await?;
    assert_eq!(built_by(&model), (2, 2));
    assert_eq!(model_balances(&model), live_built);
    assert_eq!(model_balances(&model), folded_balances(&store).await);
    assert_eq!(model_seen(&model).len(), 307);
    let shadow = model.with_file_name("model.db.balances.rebuild");
    assert!(
        !shadow.exists(),
        "the shadow file is removed after the swap"
    );
    running.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_during_a_rebuild_always_see_a_whole_model() -> TestResult {
    let (_dir, model, store) = setup();
    busy_bank(&store, 20, 2_000).await;
    build_v1(&store, &model).await?;
    let expected = model_balances(&model);
    let total: i64 = expected.values().sum();

    let done = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let reader = {
        let (model, done, reads) = (model.clone(), done.clone(), reads.clone());
        std::thread::spawn(move || {
            let db = rusqlite::Connection::open(&model).expect("open");
            while !done.load(Ordering::SeqCst) {
                let (rows, sum, low, high): (i64, i64, i64, i64) = db
                    .query_row(
                        "SELECT COUNT(*), SUM(cents), MIN(built_by), MAX(built_by) FROM balances",
                        [],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                    )
                    .expect("read");
                assert_eq!((rows, sum), (20, total), "a reader saw a partial model");
                assert_eq!(low, high, "a reader saw rows of two versions");
                reads.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let rebuilding_seen = Arc::new(AtomicBool::new(false));
    let seen = rebuilding_seen.clone();
    let running = Projections::new(store.clone())
        .batch_size(20)
        .on_rebuild_progress(move |_| seen.store(true, Ordering::SeqCst))
        .sqlite(&model, Balances::<2>::new())
        .start()?;
    running.wait_idle().await?;
    done.store(true, Ordering::SeqCst);
    reader.join().map_err(|_| "the reader saw a broken model")?;
    assert!(rebuilding_seen.load(Ordering::SeqCst));
    assert!(reads.load(Ordering::SeqCst) > 0);
    assert_eq!(built_by(&model), (2, 2));
    assert_eq!(model_balances(&model), expected);
    running.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_rebuild_leaves_the_old_model_serving_and_goes_on_later() -> TestResult {
    let (_dir, model, store) = setup();
    busy_bank(&store, 5, 400).await;
    let unlucky = record(&store, "1", AccountEvent::Deposited { amount: UNLUCKY }).await;
    let head = busy_bank(&store, 5, 100).await;
    build_v1(&store, &model).await?;
    let old = model_balances(&model);

    // The new version fails half-way through its rebuild.
    let switches = Switches::failing();
    let running = Projections::new(store.clone())
        .batch_size(50)
        .sqlite(
            &model,
            Balances::<2>::with(switches.clone(), FailurePolicy::Stop),
        )
        .start()?;
    let failed = loop {
        match running.status()[0].state.clone() {
            ProjectionState::Failed(failure) => break failure,
            _ => tokio::time::sleep(Duration::from_millis(2)).await,
        }
    };
    assert_eq!(failed.position(), Some(unlucky));
    running.stop().await;
    assert_eq!(built_by(&model), (1, 1), "the old model still serves");
    assert_eq!(model_balances(&model), old);
    assert_eq!(model_seen(&model).len() as u64, head.0);

    // Fixed, the rebuild goes on from the shadow's checkpoint.
    switches.fail.store(false, Ordering::SeqCst);
    let totals = Arc::new(Mutex::new(Vec::new()));
    let reported = totals.clone();
    let running = Projections::new(store.clone())
        .batch_size(50)
        .on_rebuild_progress(move |p| reported.lock().expect("lock").push(p.total))
        .sqlite(&model, Balances::<2>::with(switches, FailurePolicy::Stop))
        .start()?;
    running.wait_idle().await?;
    let first_total = totals.lock().expect("lock").first().copied();
    assert_eq!(
        first_total,
        Some(head.0 - (unlucky.0 - 1)),
        "it did not go on where it stopped"
    );
    assert_eq!(built_by(&model), (2, 2));
    assert_eq!(model_balances(&model), folded_balances(&store).await);
    assert_eq!(model_seen(&model), (1..=head.0).collect::<Vec<_>>());
    running.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_on_request_swaps_in_a_model_equal_to_the_fold() -> TestResult {
    let (_dir, model, store) = setup();
    busy_bank(&store, 4, 120).await;
    let running = Projections::new(store.clone())
        .batch_size(16)
        .sqlite(&model, Balances::<1>::new())
        .start()?;
    running.wait_idle().await?;
    running.rebuild("balances").await?;
    assert_eq!(model_balances(&model), folded_balances(&store).await);
    assert_eq!(model_seen(&model), (1..=124).collect::<Vec<_>>());
    // Still live after the swap.
    let position = record(&store, "2", AccountEvent::Deposited { amount: 3 }).await;
    running.wait_for("balances", position).await?;
    assert_eq!(model_seen(&model).len() as u64, position.0);
    running.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_of_an_at_least_once_projection_resets_and_replays() -> TestResult {
    let (_dir, _model, store) = setup();
    let head = busy_bank(&store, 3, 30).await;
    let seen = Seen::default();
    let running = Projections::new(store.clone())
        .projection(Positions::<false>::new(seen.clone()))
        .start()?;
    running.wait_idle().await?;
    running.rebuild("positions").await?;
    let positions = seen.lock().expect("lock").clone();
    assert_eq!(positions, (1..=head.0).map(Position).collect::<Vec<_>>());
    running.stop().await;
    Ok(())
}
