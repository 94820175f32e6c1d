//! The checkpoint store contract: each follower's checkpoint and skipped
//! events, kept exactly, by name, and saved together.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::{ensure, race, CaseResult, Options, Step};
use crate::{Checkpoint, CheckpointStore, EventId, EventType, Position, SkippedEvent, Timestamp};

/// A checkpoint at `position`, with an event id of its own.
pub(super) fn checkpoint(position: u64, version: u32) -> Checkpoint {
    Checkpoint {
        position: Position(position),
        event_id: Some(EventId::new()),
        version,
    }
}

/// An event skipped at `position`, with an error text that quotes and
/// escapes as a handler's message might.
pub(super) fn skipped(position: u64) -> SkippedEvent {
    SkippedEvent {
        position: Position(position),
        event_id: EventId::new(),
        event_type: EventType::new("Deposited").expect("valid event type"),
        error: format!("amount \"{position}\" is 'negative' (100% sure) — refusé\n"),
        skipped_at: Timestamp::from_unix_micros(
            1_700_000_000_000_000 + i64::try_from(position).expect("cases use small positions"),
        ),
    }
}

/// Guarantee 1: a name with no saved checkpoint loads as `None`.
pub(crate) async fn missing_checkpoint_loads_as_none(
    store: Arc<dyn CheckpointStore>,
    _: Options,
) -> CaseResult {
    let loaded = store.load_checkpoint("balances").await.step("load")?;
    ensure!(
        loaded.is_none(),
        "a missing checkpoint loaded as {loaded:?}"
    );
    Ok(())
}

/// Guarantee 1: a saved checkpoint loads back with every field, with an
/// event id and without one.
pub(crate) async fn saved_checkpoint_loads_back_exactly(
    store: Arc<dyn CheckpointStore>,
    _: Options,
) -> CaseResult {
    let with_id = checkpoint(42, u32::MAX);
    let without_id = Checkpoint {
        position: Position(7),
        event_id: None,
        version: 0,
    };
    for (name, saved) in [("with-id", with_id), ("without-id", without_id)] {
        store.save_checkpoint(name, saved, &[]).await.step("save")?;
        let loaded = store.load_checkpoint(name).await.step("load")?;
        ensure!(
            loaded == Some(saved),
            "{name}: saved {saved:?}, loaded {loaded:?}"
        );
    }
    let start = Checkpoint::start(3);
    store
        .save_checkpoint("at-start", start, &[])
        .await
        .step("save the start")?;
    let loaded = store.load_checkpoint("at-start").await.step("load")?;
    ensure!(loaded == Some(start), "saved {start:?}, loaded {loaded:?}");
    Ok(())
}

/// Guarantee 1: each name has its own checkpoint.
pub(crate) async fn checkpoints_of_different_names_are_separate(
    store: Arc<dyn CheckpointStore>,
    _: Options,
) -> CaseResult {
    let (a, b) = (checkpoint(5, 1), checkpoint(9, 2));
    store
        .save_checkpoint("balances", a, &[])
        .await
        .step("save a")?;
    store
        .save_checkpoint("balances-v2", b, &[])
        .await
        .step("save b")?;
    let loaded_a = store.load_checkpoint("balances").await.step("load a")?;
    let loaded_b = store.load_checkpoint("balances-v2").await.step("load b")?;
    ensure!(loaded_a == Some(a), "balances loaded {loaded_a:?}");
    ensure!(loaded_b == Some(b), "balances-v2 loaded {loaded_b:?}");
    let other = store.load_checkpoint("balance").await.step("load other")?;
    ensure!(other.is_none(), "a name never saved loaded {other:?}");
    Ok(())
}

/// Guarantee 1: names are compared byte for byte, whatever characters they
/// hold; none is a pattern or needs escaping.
pub(crate) async fn hostile_but_valid_names_round_trip(
    store: Arc<dyn CheckpointStore>,
    _: Options,
) -> CaseResult {
    let names = [
        "it's \"quoted\"",
        "100%",
        "a_c",
        "projection: Größe 🦀",
        "back\\slash; DROP TABLE checkpoints; --",
    ];
    for (n, name) in (1..).zip(names) {
        store
            .save_checkpoint(name, checkpoint(n, 1), &[skipped(n)])
            .await
            .step(name)?;
    }
    for (n, name) in (1..).zip(names) {
        let loaded = store.load_checkpoint(name).await.step(name)?;
        ensure!(
            loaded.map(|c| c.position) == Some(Position(n)),
            "{name:?} loaded {loaded:?}"
        );
        let listed = store.skipped_events(name).await.step(name)?;
        ensure!(
            listed.iter().map(|e| e.position).eq([Position(n)]),
            "{name:?} listed {listed:?}"
        );
    }
    // Names a pattern would match, or that differ only in case, are others.
    for name in ["abc", "1000", "It's \"Quoted\"", "projection: größe 🦀"] {
        let loaded = store.load_checkpoint(name).await.step(name)?;
        ensure!(loaded.is_none(), "{name:?}, never saved, loaded {loaded:?}");
    }
    Ok(())
}

/// Guarantee 2: a save moves the name's checkpoint forward, and one at or
/// past the stored position replaces it.
pub(crate) async fn save_moves_the_checkpoint_forward(
    store: Arc<dyn CheckpointStore>,
    _: Options,
) -> CaseResult {
    let last = checkpoint(9, 2);
    for saved in [checkpoint(5, 1), checkpoint(9, 1), last] {
        store
            .save_checkpoint("balances", saved, &[])
            .await
            .step("save")?;
    }
    let loaded = store.load_checkpoint("balances").await.step("load")?;
    ensure!(loaded == Some(last), "loaded {loaded:?}, expected {last:?}");
    Ok(())
}

/// Guarantee 2: a save below the stored position leaves the checkpoint as
/// it is (a follower that lags behind another never moves it back), and
/// still records its skipped events; after a reset, any position goes.
pub(crate) async fn save_below_the_checkpoint_never_moves_it_back(
    store: Arc<dyn CheckpointStore>,
    _: Options,
) -> CaseResult {
    let ahead = checkpoint(9, 1);
    store
        .save_checkpoint("balances", ahead, &[])
        .await
        .step("save 9")?;
    store
        .save_checkpoint("balances", checkpoint(4, 1), &[skipped(3)])
        .await
        .step("save 4")?;
    let loaded = store.load_checkpoint("balances").await.step("load")?;
    ensure!(loaded == Some(ahead), "moved back: loaded {loaded:?}");
    let listed = store.skipped_events("balances").await.step("list")?;
    ensure!(
        listed.iter().map(|e| e.position).eq([Position(3)]),
        "the skipped event was not recorded: {listed:?}"
    );
    store.reset_checkpoint("balances").await.step("reset")?;
    let start = checkpoint(2, 1);
    store
        .save_checkpoint("balances", start, &[])
        .await
        .step("save after reset")?;
    let loaded = store.load_checkpoint("balances").await.step("load")?;
    ensure!(loaded == Some(start), "after a reset: loaded {loaded:?}");
    Ok(())
}

/// Guarantee 2: skipped events are recorded with the checkpoint, every
/// field exactly, and kept across later saves.
pub(crate) async fn skipped_events_are_recorded_with_their_checkpoint(
    store: Arc<dyn CheckpointStore>,
    _: Options,
) -> CaseResult {
    let (first, second) = (skipped(3), skipped(8));
    store
        .save_checkpoint("balances", checkpoint(4, 1), std::slice::from_ref(&first))
        .await
        .step("save with one")?;
    store
        .save_checkpoint("balances", checkpoint(10, 1), std::slice::from_ref(&second))
        .await
        .step("save with another")?;
    store
        .save_checkpoint("balances", checkpoint(12, 1), &[])
        .await
        .step("save with none")?;
    let listed = store.skipped_events("balances").await.step("list")?;
    ensure!(
        listed == [first.clone(), second.clone()],
        "recorded {first:?} and {second:?}, listed {listed:?}"
    );
    Ok(())
}

/// Guarantee 2: an event recorded twice for a name, in one save or in two,
/// is kept once.
pub(crate) async fn saving_the_same_skipped_event_twice_keeps_one_record(
    store: Arc<dyn CheckpointStore>,
    _: Options,
) -> CaseResult {
    let event = skipped(3);
    let twice = [event.clone(), event.clone()];
    store
        .save_checkpoint("balances", checkpoint(4, 1), &twice)
        .await
        .step("save it twice at once")?;
    store
        .save_checkpoint("balances", checkpoint(5, 1), std::slice::from_ref(&event))
        .await
        .step("save it again")?;
    let listed = store.skipped_events("balances").await.step("list")?;
    ensure!(
        listed == [event.clone()],
        "recorded {event:?} once, listed {listed:?}"
    );
    Ok(())
}

/// Guarantee 2: a reader never finds a checkpoint without the skipped
/// events saved with it. Saves race with a reader that loads the checkpoint
/// first and lists skipped events second: if the two were written apart,
/// the reader would find a checkpoint past an event it cannot list.
pub(crate) async fn readers_never_find_a_checkpoint_without_its_skipped_events(
    store: Arc<dyn CheckpointStore>,
    _: Options,
) -> CaseResult {
    const SAVES: u64 = 40;
    let saved_all = Arc::new(AtomicBool::new(false));
    let outcomes = race(2, |task| {
        let (store, saved_all) = (store.clone(), saved_all.clone());
        async move {
            if task == 0 {
                let mut saved = Ok(());
                for n in 1..=SAVES {
                    saved = store
                        .save_checkpoint("balances", checkpoint(n, 1), &[skipped(n)])
                        .await
                        .step("save");
                    if saved.is_err() {
                        break;
                    }
                }
                // The reader stops after one more look, whatever happened.
                saved_all.store(true, Ordering::SeqCst);
                return saved;
            }
            loop {
                let last_look = saved_all.load(Ordering::SeqCst);
                let loaded = store.load_checkpoint("balances").await.step("load")?;
                let listed = store.skipped_events("balances").await.step("list")?;
                let Some(loaded) = loaded else {
                    ensure!(!last_look, "the last checkpoint saved is missing");
                    tokio::task::yield_now().await;
                    continue;
                };
                ensure!(
                    listed.iter().any(|e| e.position == loaded.position),
                    "the checkpoint at {} was found without the event skipped there \
                     (listed {} events)",
                    loaded.position,
                    listed.len()
                );
                if last_look {
                    return Ok(());
                }
                tokio::task::yield_now().await;
            }
        }
    })
    .await?;
    outcomes.into_iter().collect()
}

/// Guarantee 3: skipped events list in position order, whatever order they
/// were saved in, within one save and across saves.
pub(crate) async fn skipped_events_list_in_position_order(
    store: Arc<dyn CheckpointStore>,
    _: Options,
) -> CaseResult {
    store
        .save_checkpoint(
            "balances",
            checkpoint(20, 1),
            &[skipped(17), skipped(4), skipped(11)],
        )
        .await
        .step("save a first batch")?;
    store
        .save_checkpoint(
            "balances",
            checkpoint(30, 1),
            &[skipped(25), skipped(2), skipped(9)],
        )
        .await
        .step("save a second batch")?;
    let listed = store.skipped_events("balances").await.step("list")?;
    let positions: Vec<u64> = listed.iter().map(|e| e.position.0).collect();
    ensure!(
        positions == [2, 4, 9, 11, 17, 25],
        "listed positions {positions:?}"
    );
    Ok(())
}

/// Guarantee 3: a name that skipped nothing, or was never saved, lists
/// nothing.
pub(crate) async fn name_without_skipped_events_lists_none(
    store: Arc<dyn CheckpointStore>,
    _: Options,
) -> CaseResult {
    store
        .save_checkpoint("balances", checkpoint(4, 1), &[])
        .await
        .step("save")?;
    for name in ["balances", "never-saved"] {
        let listed = store.skipped_events(name).await.step(name)?;
        ensure!(listed.is_empty(), "{name} listed {listed:?}");
    }
    Ok(())
}

/// Guarantee 4: a reset forgets the checkpoint and the skipped events, and a
/// later save starts from nothing.
pub(crate) async fn reset_forgets_the_checkpoint_and_its_skipped_events(
    store: Arc<dyn CheckpointStore>,
    _: Options,
) -> CaseResult {
    store
        .save_checkpoint("balances", checkpoint(10, 1), &[skipped(3), skipped(6)])
        .await
        .step("save")?;
    store.reset_checkpoint("balances").await.step("reset")?;
    let loaded = store.load_checkpoint("balances").await.step("load")?;
    ensure!(loaded.is_none(), "a reset checkpoint loaded as {loaded:?}");
    let listed = store.skipped_events("balances").await.step("list")?;
    ensure!(listed.is_empty(), "a reset name listed {listed:?}");
    let again = checkpoint(1, 2);
    store
        .save_checkpoint("balances", again, &[])
        .await
        .step("save after the reset")?;
    let loaded = store.load_checkpoint("balances").await.step("load again")?;
    ensure!(loaded == Some(again), "loaded {loaded:?} after a new save");
    let listed = store.skipped_events("balances").await.step("list again")?;
    ensure!(listed.is_empty(), "skipped events came back: {listed:?}");
    Ok(())
}

/// Guarantee 4: a reset of one name leaves every other name's checkpoint
/// and skipped events; a reset of a name never saved is harmless.
pub(crate) async fn reset_of_one_name_leaves_the_others(
    store: Arc<dyn CheckpointStore>,
    _: Options,
) -> CaseResult {
    let kept = checkpoint(8, 1);
    let kept_skipped = [skipped(2), skipped(5)];
    store
        .save_checkpoint("balances", kept, &kept_skipped)
        .await
        .step("save the kept one")?;
    store
        .save_checkpoint("balances-v2", checkpoint(9, 2), &[skipped(5)])
        .await
        .step("save the reset one")?;
    store.reset_checkpoint("balances-v2").await.step("reset")?;
    store
        .reset_checkpoint("never-saved")
        .await
        .step("reset a name never saved")?;
    let loaded = store.load_checkpoint("balances").await.step("load")?;
    ensure!(
        loaded == Some(kept),
        "the other checkpoint loaded {loaded:?}"
    );
    let listed = store.skipped_events("balances").await.step("list")?;
    ensure!(
        listed == kept_skipped,
        "the other name listed {listed:?}, expected {kept_skipped:?}"
    );
    Ok(())
}
