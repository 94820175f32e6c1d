//! Versions, positions, expected versions and atomic appends.

use std::sync::Arc;

use super::{ensure, event, events, stream, CaseResult, Options, Step};
use crate::{
    ActualVersion, AppendError, AppendRequest, EventStore, EventStoreExt, ExpectedVersion,
    Position, ReadAll,
};

/// Guarantee 1: versions start at 1 and have no gaps.
pub(crate) async fn versions_start_at_one_without_gaps(
    store: Arc<dyn EventStore>,
    _: Options,
) -> CaseResult {
    let s = stream("account-1");
    let first = store
        .append_to_stream(&s, ExpectedVersion::NoStream, events(0..3))
        .await
        .step("first append")?;
    let versions: Vec<u64> = first.events().iter().map(|e| e.version).collect();
    ensure!(
        versions == [1, 2, 3],
        "first append got versions {versions:?}"
    );
    ensure!(
        first.stream_version(&s) == Some(3),
        "outcome reports version {:?}",
        first.stream_version(&s)
    );
    store
        .append_to_stream(&s, ExpectedVersion::Exact(3), events(3..5))
        .await
        .step("second append")?;
    let stored: Vec<u64> = store
        .read_stream_to_end(&s)
        .await
        .step("read")?
        .iter()
        .map(|e| e.version)
        .collect();
    ensure!(stored == [1, 2, 3, 4, 5], "stored versions are {stored:?}");
    Ok(())
}

/// Guarantee 2: positions are unique and strictly increasing in commit order.
pub(crate) async fn positions_increase_in_commit_order(
    store: Arc<dyn EventStore>,
    options: Options,
) -> CaseResult {
    let mut appended = Vec::new();
    for i in 0..6 {
        let s = stream(&format!("order-{}", i % 3));
        let outcome = store
            .append_to_stream(&s, ExpectedVersion::Any, events(0..(i % 3 + 1)))
            .await
            .step("append")?;
        appended.extend(outcome.events().iter().map(|e| e.position));
    }
    let log: Vec<Position> = store
        .read_all(ReadAll::after(Position::START))
        .await
        .step("read all")?
        .events
        .iter()
        .map(|e| e.position)
        .collect();
    ensure!(
        log == appended,
        "log order {log:?} differs from commit order {appended:?}"
    );
    ensure!(
        log.windows(2).all(|w| w[0] < w[1]),
        "positions not strictly increasing: {log:?}"
    );
    ensure!(
        log.first().is_some_and(|p| p.0 >= 1),
        "positions start below 1: {log:?}"
    );
    if options.gap_free_positions {
        let expected: Vec<Position> = (1..=log.len() as u64).map(Position).collect();
        ensure!(log == expected, "positions have gaps: {log:?}");
    }
    let head = store.head().await.step("head")?;
    ensure!(
        Some(&head) == log.last(),
        "head {head:?} is not the last position"
    );
    Ok(())
}

/// Guarantee 3: each expected version is accepted in the state it names.
pub(crate) async fn each_expected_version_accepts_its_state(
    store: Arc<dyn EventStore>,
    _: Options,
) -> CaseResult {
    let s = stream("account-1");
    let t = stream("account-2");
    store
        .append_to_stream(&s, ExpectedVersion::NoStream, vec![event(0)])
        .await
        .step("NoStream on a new stream")?;
    store
        .append_to_stream(&t, ExpectedVersion::Exact(0), vec![event(0)])
        .await
        .step("Exact(0) on a new stream")?;
    store
        .append_to_stream(&s, ExpectedVersion::StreamExists, vec![event(1)])
        .await
        .step("StreamExists on an existing stream")?;
    store
        .append_to_stream(&s, ExpectedVersion::Exact(2), vec![event(2)])
        .await
        .step("Exact(2) at version 2")?;
    store
        .append_to_stream(&s, ExpectedVersion::Any, vec![event(3)])
        .await
        .step("Any on an existing stream")?;
    store
        .append_to_stream(&stream("account-3"), ExpectedVersion::Any, vec![event(0)])
        .await
        .step("Any on a new stream")?;
    let version = store.stream_version(&s).await.step("version")?;
    ensure!(version == Some(4), "stream at {version:?}, expected 4");
    Ok(())
}

/// Guarantee 3: a stale expected version is a conflict naming both versions.
pub(crate) async fn append_with_stale_version_fails_with_conflict(
    store: Arc<dyn EventStore>,
    _: Options,
) -> CaseResult {
    let s = stream("account-1");
    store
        .append_to_stream(&s, ExpectedVersion::NoStream, events(0..2))
        .await
        .step("seed")?;
    let result = store
        .append_to_stream(&s, ExpectedVersion::Exact(1), vec![event(9)])
        .await;
    check_conflict(result, &s, ExpectedVersion::Exact(1), ActualVersion::At(2))?;
    let after = store.read_stream_to_end(&s).await.step("read")?;
    ensure!(
        after.len() == 2,
        "the refused append wrote: {} events",
        after.len()
    );
    Ok(())
}

/// Guarantee 3: every kind of mismatch is a conflict, and nothing is written.
pub(crate) async fn expected_version_mismatches_fail_with_conflict_and_write_nothing(
    store: Arc<dyn EventStore>,
    _: Options,
) -> CaseResult {
    let s = stream("account-1");
    let missing = stream("account-404");
    store
        .append_to_stream(&s, ExpectedVersion::NoStream, events(0..3))
        .await
        .step("seed")?;
    let head = store.head().await.step("head")?;
    let cases = [
        (&s, ExpectedVersion::NoStream, ActualVersion::At(3)),
        (&s, ExpectedVersion::Exact(0), ActualVersion::At(3)),
        (&s, ExpectedVersion::Exact(4), ActualVersion::At(3)),
        (&s, ExpectedVersion::Exact(u64::MAX), ActualVersion::At(3)),
        (
            &missing,
            ExpectedVersion::StreamExists,
            ActualVersion::NoStream,
        ),
        (&missing, ExpectedVersion::Exact(1), ActualVersion::NoStream),
    ];
    for (target, expected, actual) in cases {
        let result = store
            .append_to_stream(target, expected, vec![event(7)])
            .await;
        check_conflict(result, target, expected, actual)?;
    }
    let after = store.head().await.step("head")?;
    ensure!(
        after == head,
        "refused appends moved the head from {head} to {after}"
    );
    let version = store.stream_version(&missing).await.step("version")?;
    ensure!(version.is_none(), "a refused append created {missing}");
    Ok(())
}

/// Guarantee 4: a multi-stream append writes every stream, in request order.
pub(crate) async fn multi_stream_append_commits_all_streams_together(
    store: Arc<dyn EventStore>,
    _: Options,
) -> CaseResult {
    let a = stream("account-1");
    let b = stream("ledger-1");
    let outcome = store
        .append(
            AppendRequest::new()
                .stream(a.clone(), ExpectedVersion::NoStream, events(0..2))
                .stream(b.clone(), ExpectedVersion::NoStream, events(2..3)),
        )
        .await
        .step("multi-stream append")?;
    let streams: Vec<(String, u64)> = outcome
        .events()
        .iter()
        .map(|e| (e.stream_id.to_string(), e.version))
        .collect();
    ensure!(
        streams
            == [
                ("account-1".to_owned(), 1),
                ("account-1".to_owned(), 2),
                ("ledger-1".to_owned(), 1)
            ],
        "outcome in wrong order: {streams:?}"
    );
    let positions: Vec<u64> = outcome.events().iter().map(|e| e.position.0).collect();
    ensure!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "positions not increasing in request order: {positions:?}"
    );
    ensure!(
        store.read_stream_to_end(&a).await.step("read a")?.len() == 2,
        "stream a incomplete"
    );
    ensure!(
        store.read_stream_to_end(&b).await.step("read b")?.len() == 1,
        "stream b incomplete"
    );
    Ok(())
}

/// Guarantee 4: one stream's conflict fails the whole append.
pub(crate) async fn multi_stream_append_with_one_conflict_writes_nothing(
    store: Arc<dyn EventStore>,
    _: Options,
) -> CaseResult {
    let a = stream("account-1");
    let b = stream("account-2");
    store
        .append_to_stream(&b, ExpectedVersion::NoStream, vec![event(0)])
        .await
        .step("seed")?;
    let head = store.head().await.step("head")?;
    let result = store
        .append(
            AppendRequest::new()
                .stream(a.clone(), ExpectedVersion::NoStream, events(0..3))
                .stream(b.clone(), ExpectedVersion::NoStream, vec![event(1)]),
        )
        .await;
    check_conflict(result, &b, ExpectedVersion::NoStream, ActualVersion::At(1))?;
    ensure!(
        store
            .read_stream_to_end(&a)
            .await
            .step("read a")?
            .is_empty(),
        "the stream without conflict was written"
    );
    let after = store.head().await.step("head")?;
    ensure!(after == head, "head moved from {head} to {after}");
    Ok(())
}

/// Checks that an append failed with exactly this conflict.
pub(crate) fn check_conflict<T: std::fmt::Debug>(
    result: Result<T, AppendError>,
    stream: &crate::StreamId,
    expected: ExpectedVersion,
    actual: ActualVersion,
) -> CaseResult {
    match result {
        Err(AppendError::Conflict {
            stream: s,
            expected: e,
            actual: a,
        }) => {
            ensure!(
                &s == stream && e == expected && a == actual,
                "conflict reported ({s}, {e:?}, {a:?}), expected ({stream}, {expected:?}, {actual:?})"
            );
            Ok(())
        }
        other => Err(format!(
            "expected a conflict on {stream} ({expected:?} vs {actual:?}), got {other:?}"
        )),
    }
}
