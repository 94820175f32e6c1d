//! Tracked appends (guarantee 13 of the store contract): events and a named
//! checkpoint committed together, and a reaction already tracked refused.
//!
//! These cases need a store that is both an [`EventStore`](crate::EventStore)
//! and a [`CheckpointStore`](crate::CheckpointStore), so they run with the
//! checkpoint store contract.

use std::collections::HashSet;
use std::sync::Arc;

use super::checkpoints::{checkpoint, skipped};
use super::{ensure, event, events, race, stream, CaseResult, CheckpointedStore, Options, Step};
use crate::testkit::read_log;
use crate::{
    AppendError, AppendRequest, Checkpoint, EventId, EventStoreExt, ExpectedVersion, NameProblem,
    Position, StreamId,
};

const SAGA: &str = "shipping-saga";

/// An append of two events to `s` that tracks [`SAGA`] at `checkpoint`.
fn tracked(s: &StreamId, expected: ExpectedVersion, checkpoint: Checkpoint) -> AppendRequest {
    AppendRequest::to_stream(s.clone(), expected, events(0..2)).track(SAGA, checkpoint)
}

/// Fails unless the log's head is `head` and [`SAGA`]'s checkpoint is
/// `checkpoint`: what a refused append must leave.
async fn unchanged(
    store: &Arc<dyn CheckpointedStore>,
    head: Position,
    checkpoint: Option<Checkpoint>,
    after: &str,
) -> CaseResult {
    let now = store.head().await.step("head")?;
    ensure!(now == head, "{after}: the head moved from {head} to {now}");
    let loaded = store.load_checkpoint(SAGA).await.step("load")?;
    ensure!(
        loaded == checkpoint,
        "{after}: the checkpoint moved from {checkpoint:?} to {loaded:?}"
    );
    Ok(())
}

/// The ids of the events in the log, in position order.
async fn stored_ids<C: FromIterator<EventId>>(
    store: &Arc<dyn CheckpointedStore>,
) -> Result<C, String> {
    let log = read_log(&**store).await.step("read the log")?;
    Ok(log.iter().map(|e| e.event_id).collect())
}

/// Guarantee 13: a tracked append stores its events, across streams, and
/// sets the checkpoint to exactly what it was given; the name's skipped
/// events stay as they were.
pub(crate) async fn tracked_append_commits_events_and_checkpoint_together(
    store: Arc<dyn CheckpointedStore>,
    _: Options,
) -> CaseResult {
    let earlier = [skipped(1)];
    store
        .save_checkpoint(SAGA, checkpoint(1, 1), &earlier)
        .await
        .step("save an earlier checkpoint")?;
    let moved_to = checkpoint(4, u32::MAX);
    let request = AppendRequest::new()
        .stream(
            stream("shipment-1"),
            ExpectedVersion::NoStream,
            events(0..2),
        )
        .stream(stream("saga-1"), ExpectedVersion::Any, vec![event(2)])
        .track(SAGA, moved_to);
    let outcome = store.append(request.clone()).await.step("tracked append")?;
    let stored: Vec<EventId> = stored_ids(&store).await?;
    let sent: Vec<EventId> = request.events().map(|e| e.event_id()).collect();
    ensure!(stored == sent, "stored {stored:?}, appended {sent:?}");
    let answered: Vec<EventId> = outcome.events().iter().map(|e| e.event_id).collect();
    ensure!(answered == sent, "answered {answered:?}, appended {sent:?}");
    let loaded = store.load_checkpoint(SAGA).await.step("load")?;
    ensure!(
        loaded == Some(moved_to),
        "tracked {moved_to:?}, loaded {loaded:?}"
    );
    let listed = store.skipped_events(SAGA).await.step("list")?;
    ensure!(
        listed == earlier,
        "the skipped events changed to {listed:?}"
    );
    // A name never saved before is set as well.
    let first = checkpoint(0, 3);
    let request = AppendRequest::to_stream(stream("saga-2"), ExpectedVersion::Any, vec![event(3)])
        .track("billing-saga", first);
    store.append(request).await.step("tracked append")?;
    let loaded = store.load_checkpoint("billing-saga").await.step("load")?;
    ensure!(
        loaded == Some(first),
        "tracked {first:?}, loaded {loaded:?}"
    );
    Ok(())
}

/// Guarantee 13: an append tracking a position the checkpoint is already at
/// (the same reaction) or past (a later one) fails with `AlreadyTracked`
/// and writes nothing.
pub(crate) async fn tracked_append_at_or_before_the_checkpoint_fails_with_already_tracked(
    store: Arc<dyn CheckpointedStore>,
    _: Options,
) -> CaseResult {
    let s = stream("shipment-1");
    let stored = checkpoint(5, 1);
    store
        .append(tracked(&s, ExpectedVersion::NoStream, stored))
        .await
        .step("first reaction")?;
    let head = store.head().await.step("head")?;
    for requested in [5, 3] {
        let request = tracked(&s, ExpectedVersion::Any, checkpoint(requested, 1));
        let result = store.append(request).await;
        ensure!(
            matches!(
                &result,
                Err(AppendError::AlreadyTracked { name, stored: Position(5), requested: r })
                    if name == SAGA && *r == Position(requested)
            ),
            "tracking {requested} with the checkpoint at 5 gave {result:?}"
        );
        unchanged(&store, head, Some(stored), &format!("tracking {requested}")).await?;
    }
    Ok(())
}

/// Guarantee 13: an append covering several positions is refused if the
/// checkpoint is at or past the first of them, though below the last, and
/// commits when it is below the first.
pub(crate) async fn tracked_range_from_at_or_before_the_checkpoint_fails_with_already_tracked(
    store: Arc<dyn CheckpointedStore>,
    _: Options,
) -> CaseResult {
    let s = stream("shipment-1");
    let stored = checkpoint(5, 1);
    store
        .append(tracked(&s, ExpectedVersion::NoStream, stored))
        .await
        .step("first reaction")?;
    let head = store.head().await.step("head")?;
    let overlapping = AppendRequest::to_stream(s.clone(), ExpectedVersion::Any, events(0..1))
        .track_from(SAGA, Position(4), checkpoint(9, 1));
    let result = store.append(overlapping).await;
    ensure!(
        matches!(
            &result,
            Err(AppendError::AlreadyTracked {
                stored: Position(5),
                requested: Position(4),
                ..
            })
        ),
        "reactions from 4 to 9 with the checkpoint at 5 gave {result:?}"
    );
    unchanged(&store, head, Some(stored), "reactions from 4 to 9").await?;
    let to = checkpoint(9, 1);
    let after = AppendRequest::to_stream(s.clone(), ExpectedVersion::Any, events(1..2)).track_from(
        SAGA,
        Position(6),
        to,
    );
    store.append(after).await.step("reactions from 6 to 9")?;
    let loaded = store.load_checkpoint(SAGA).await.step("load")?;
    ensure!(
        loaded == Some(to),
        "after reactions from 6 to 9: {loaded:?}"
    );
    Ok(())
}

/// Guarantee 13: a tracked append refused for a conflict leaves the
/// checkpoint where it was, or unset.
pub(crate) async fn tracked_append_with_a_conflict_leaves_the_checkpoint(
    store: Arc<dyn CheckpointedStore>,
    _: Options,
) -> CaseResult {
    let s = stream("shipment-1");
    store
        .append_to_stream(&s, ExpectedVersion::NoStream, events(0..3))
        .await
        .step("seed")?;
    let head = store.head().await.step("head")?;
    let stale = tracked(&s, ExpectedVersion::Exact(1), checkpoint(2, 1));
    let result = store.append(stale).await;
    ensure!(
        matches!(result, Err(AppendError::Conflict { .. })),
        "a stale tracked append with no checkpoint gave {result:?}"
    );
    unchanged(&store, head, None, "a conflict").await?;
    let saved = checkpoint(2, 1);
    store.save_checkpoint(SAGA, saved, &[]).await.step("save")?;
    let stale = tracked(&s, ExpectedVersion::NoStream, checkpoint(3, 1));
    let result = store.append(stale).await;
    ensure!(
        matches!(result, Err(AppendError::Conflict { .. })),
        "a stale tracked append gave {result:?}"
    );
    unchanged(&store, head, Some(saved), "a conflict").await
}

/// Guarantee 13 (with 5): a retry of a committed tracked append returns the
/// original result, though the checkpoint is now at its position or past
/// it, and writes nothing.
pub(crate) async fn retry_of_committed_tracked_append_returns_original_result(
    store: Arc<dyn CheckpointedStore>,
    _: Options,
) -> CaseResult {
    let reaction = checkpoint(3, 1);
    let request = tracked(&stream("shipment-1"), ExpectedVersion::NoStream, reaction);
    let first = store.append(request.clone()).await.step("first append")?;
    // Retried with the checkpoint at the append's position, then past it.
    for later in [None, Some(checkpoint(8, 1))] {
        if let Some(later) = later {
            store
                .append(tracked(&stream("shipment-2"), ExpectedVersion::Any, later))
                .await
                .step("a later reaction")?;
        }
        let stored = later.unwrap_or(reaction);
        let when = format!("a retry with the checkpoint at {}", stored.position);
        let head = store.head().await.step("head")?;
        let again = store.append(request.clone()).await.step(&when)?;
        ensure!(
            again == first,
            "{when} returned {again:?}, original {first:?}"
        );
        unchanged(&store, head, Some(stored), &when).await?;
    }
    Ok(())
}

/// Guarantee 13: of tracked appends racing to react to one position, each
/// to a stream of its own, exactly one succeeds; every other fails with
/// `AlreadyTracked`, and only the winner's events are stored.
pub(crate) async fn racing_tracked_appends_of_one_position_exactly_one_wins(
    store: Arc<dyn CheckpointedStore>,
    _: Options,
) -> CaseResult {
    const RUNNERS: u32 = 8;
    for round in 1..=5u64 {
        let position = round * 10;
        let requests: Vec<AppendRequest> = (0..RUNNERS)
            .map(|runner| {
                let s = stream(&format!("shipment-{round}.{runner}"));
                tracked(&s, ExpectedVersion::NoStream, checkpoint(position, runner))
            })
            .collect();
        let results = race(requests.len(), |i| {
            let (store, request) = (store.clone(), requests[i].clone());
            async move { store.append(request).await }
        })
        .await?;
        let mut winners = Vec::new();
        for (request, result) in requests.iter().zip(&results) {
            match result {
                Ok(_) => winners.push(request),
                Err(AppendError::AlreadyTracked {
                    stored, requested, ..
                }) if *stored == Position(position) && *requested == Position(position) => {}
                Err(e) => return Err(format!("round {round}: a runner failed with {e:?}")),
            }
        }
        let [winner] = winners[..] else {
            return Err(format!(
                "round {round}: {} runners succeeded",
                winners.len()
            ));
        };
        let loaded = store.load_checkpoint(SAGA).await.step("load")?;
        let won = winner.tracking().map(|t| t.checkpoint);
        ensure!(
            loaded == won,
            "round {round}: the checkpoint is {loaded:?}, the winner tracked {won:?}"
        );
        let stored: HashSet<EventId> = stored_ids(&store).await?;
        for request in &requests {
            let present = request
                .events()
                .filter(|e| stored.contains(&e.event_id()))
                .count();
            let due = if std::ptr::eq(request, winner) {
                request.event_count()
            } else {
                0
            };
            ensure!(
                present == due,
                "round {round}: {present} events of a runner are stored, {due} due"
            );
        }
    }
    Ok(())
}

/// Guarantee 13: an append without tracking leaves every checkpoint, and
/// its skipped events, as they are.
pub(crate) async fn untracked_append_leaves_checkpoints_alone(
    store: Arc<dyn CheckpointedStore>,
    _: Options,
) -> CaseResult {
    let saved = checkpoint(1, 1);
    let recorded = [skipped(1)];
    store
        .save_checkpoint(SAGA, saved, &recorded)
        .await
        .step("save")?;
    store
        .append_to_stream(&stream("shipment-1"), ExpectedVersion::Any, events(0..3))
        .await
        .step("untracked append")?;
    let loaded = store.load_checkpoint(SAGA).await.step("load")?;
    ensure!(loaded == Some(saved), "the checkpoint became {loaded:?}");
    let listed = store.skipped_events(SAGA).await.step("list")?;
    ensure!(listed == recorded, "the skipped events became {listed:?}");
    let other = store.load_checkpoint("billing-saga").await.step("load")?;
    ensure!(other.is_none(), "a name never saved loaded {other:?}");
    Ok(())
}

/// Guarantee 13 (with 6): a tracked checkpoint whose name breaks the naming
/// rules fails with `InvalidCheckpointName` and writes nothing.
pub(crate) async fn tracked_append_with_invalid_name_fails_with_invalid_checkpoint_name(
    store: Arc<dyn CheckpointedStore>,
    _: Options,
) -> CaseResult {
    for (name, problem) in [
        ("", NameProblem::Empty),
        ("saga ", NameProblem::SurroundingWhitespace),
        ("sa\u{0}ga", NameProblem::ControlCharacter { at: 2 }),
    ] {
        let request =
            AppendRequest::to_stream(stream("shipment-1"), ExpectedVersion::Any, vec![event(0)])
                .track(name, checkpoint(1, 1));
        let result = store.append(request).await;
        ensure!(
            matches!(&result, Err(AppendError::InvalidCheckpointName { source }) if source.problem == problem),
            "tracking {name:?} gave {result:?}"
        );
        let head = store.head().await.step("head")?;
        ensure!(
            head == Position::START,
            "tracking {name:?} wrote: head {head}"
        );
        let loaded = store.load_checkpoint(name).await.step("load")?;
        ensure!(loaded.is_none(), "tracking {name:?} saved {loaded:?}");
    }
    Ok(())
}
