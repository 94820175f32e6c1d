//! Concurrent writers and followers: count events, not just errors.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use super::basics::check_conflict;
use super::{ensure, event, race, stream, versions_are_contiguous, CaseResult, Options, Step};
use crate::testkit::read_log;
use crate::{
    ActualVersion, AppendError, AppendRequest, EventStore, EventStoreExt, ExpectedVersion,
    NewEvent, Payload, Position, ReadAll,
};

/// How long a follower waits for the next event before the case fails.
const PATIENCE: Duration = Duration::from_secs(20);

fn tagged(pairs: &[(&str, usize)]) -> NewEvent {
    let body: Vec<String> = pairs.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    let payload = Payload::from_json(format!("{{{}}}", body.join(","))).expect("valid JSON");
    NewEvent::new("Tagged", 1, payload).expect("valid event type")
}

fn read_tag(payload: &Payload, key: &str) -> Option<usize> {
    let value = payload.to_value().ok()?;
    usize::try_from(value.get(key)?.as_u64()?).ok()
}

/// A small deterministic generator, so a failing run can be repeated.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: u64) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % sides
    }
}

/// Guarantee 8: followers paging the global log while four writers append
/// see every event exactly once, in strictly increasing position order.
pub(crate) async fn followers_never_skip_committed_events(
    store: Arc<dyn EventStore>,
    _: Options,
) -> CaseResult {
    const WRITERS: usize = 4;
    const PER_WRITER: usize = 250;
    let total = WRITERS * PER_WRITER;

    let mut followers = Vec::new();
    for _ in 0..2 {
        let store = store.clone();
        followers.push(tokio::spawn(async move {
            let mut head = store.watch_head();
            let mut seen = Vec::with_capacity(total);
            let mut last = Position::START;
            while seen.len() < total {
                let page = store
                    .read_all(ReadAll::after(last).limit(7))
                    .await
                    .step("follower read")?;
                let read_through = page.read_through;
                if page.is_empty() {
                    ensure!(
                        read_through >= last,
                        "an empty page read through {read_through}, before its start {last}"
                    );
                    match tokio::time::timeout(PATIENCE, head.wait_past(read_through)).await {
                        Ok(Ok(_)) => continue,
                        Ok(Err(e)) => return Err(format!("head watch: {e}")),
                        Err(_) => {
                            return Err(format!(
                                "follower stuck at {last} after {} of {total} events",
                                seen.len()
                            ))
                        }
                    }
                }
                for e in page {
                    ensure!(
                        e.position > last,
                        "follower got {} after {last}",
                        e.position
                    );
                    last = e.position;
                    seen.push(e);
                }
                ensure!(
                    read_through >= last,
                    "a page read through {read_through}, before its last event {last}"
                );
                last = read_through;
            }
            Ok(seen)
        }));
    }

    let seed = std::env::var("ANNALS_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_u64);
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let mut dice = Dice(seed ^ (w as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut seq = 0;
            while seq < PER_WRITER {
                let n = (1 + usize::try_from(dice.roll(5)).unwrap_or(0)).min(PER_WRITER - seq);
                let batch = (seq..seq + n)
                    .map(|s| tagged(&[("w", w), ("seq", s)]))
                    .collect();
                let target = stream(&format!("shared-{}", dice.roll(8)));
                store
                    .append_to_stream(&target, ExpectedVersion::Any, batch)
                    .await
                    .step("writer append")?;
                seq += n;
            }
            Ok::<(), String>(())
        }));
    }
    for w in writers {
        w.await.step("writer task")??;
    }
    let all: Vec<Position> = read_log(&*store)
        .await
        .step("read all")?
        .iter()
        .map(|e| e.position)
        .collect();
    ensure!(
        all.len() == total,
        "the log holds {} of {total} events (seed {seed})",
        all.len()
    );
    for f in followers {
        let seen = f.await.step("follower task")??;
        let positions: Vec<Position> = seen.iter().map(|e| e.position).collect();
        ensure!(
            positions == all,
            "a follower's sequence differs from the log (seed {seed})"
        );
        let mut last_seq: BTreeMap<usize, usize> = BTreeMap::new();
        for e in &seen {
            let (Some(w), Some(s)) = (read_tag(&e.payload, "w"), read_tag(&e.payload, "seq"))
            else {
                return Err("an event lost its tags".into());
            };
            if let Some(prev) = last_seq.insert(w, s) {
                ensure!(
                    s == prev + 1,
                    "writer {w}: seq {s} seen after {prev} (seed {seed})"
                );
            }
        }
    }
    Ok(())
}

/// Guarantee 9: 32 tasks append with the same expected version; exactly one
/// wins each round and every loser gets a conflict naming the new version.
pub(crate) async fn racing_appends_with_one_version_exactly_one_wins(
    store: Arc<dyn EventStore>,
    _: Options,
) -> CaseResult {
    const TASKS: usize = 32;
    const ROUNDS: u64 = 20;
    let s = stream("race-1");
    store
        .append_to_stream(&s, ExpectedVersion::NoStream, vec![event(0)])
        .await
        .step("seed")?;
    for k in 1..=ROUNDS {
        let results = race(TASKS, |t| {
            let (store, s) = (store.clone(), s.clone());
            async move {
                store
                    .append_to_stream(&s, ExpectedVersion::Exact(k), vec![event(t)])
                    .await
            }
        })
        .await?;
        let mut wins = 0;
        for result in results {
            match result {
                Ok(_) => wins += 1,
                conflict => {
                    check_conflict(
                        conflict,
                        &s,
                        ExpectedVersion::Exact(k),
                        ActualVersion::At(k + 1),
                    )
                    .map_err(|e| format!("round {k}: {e}"))?;
                }
            }
        }
        ensure!(wins == 1, "round {k}: {wins} appends won");
    }
    let stored = store.read_stream_to_end(&s).await.step("read")?;
    ensure!(
        versions_are_contiguous(&stored) && stored.len() as u64 == ROUNDS + 1,
        "stream holds {} events, expected {}",
        stored.len(),
        ROUNDS + 1
    );
    Ok(())
}

/// Guarantee 9: tasks that read the version, append with it and retry on
/// conflict all get their events in, each exactly once.
pub(crate) async fn read_modify_write_loops_lose_nothing(
    store: Arc<dyn EventStore>,
    _: Options,
) -> CaseResult {
    const TASKS: usize = 16;
    const ITERATIONS: usize = 25;
    let s = stream("counter-1");
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (store, s) = (store.clone(), s.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..ITERATIONS {
                loop {
                    let version = store.stream_version(&s).await.step("version")?;
                    let expected = ExpectedVersion::Exact(version.unwrap_or(0));
                    match store
                        .append_to_stream(&s, expected, vec![tagged(&[("t", t), ("i", i)])])
                        .await
                    {
                        Ok(_) => break,
                        Err(AppendError::Conflict { actual, .. }) => {
                            let real = matches!(actual, ActualVersion::At(a) if Some(a) != version);
                            ensure!(
                                real,
                                "conflict at {actual:?} but version read was {version:?}"
                            );
                        }
                        Err(e) => return Err(format!("append: {e}")),
                    }
                }
            }
            Ok::<(), String>(())
        }));
    }
    for task in tasks {
        task.await.step("task")??;
    }
    let stored = store.read_stream_to_end(&s).await.step("read")?;
    ensure!(
        stored.len() == TASKS * ITERATIONS,
        "stream holds {} events",
        stored.len()
    );
    let distinct: HashSet<(Option<usize>, Option<usize>)> = stored
        .iter()
        .map(|e| (read_tag(&e.payload, "t"), read_tag(&e.payload, "i")))
        .collect();
    ensure!(
        distinct.len() == TASKS * ITERATIONS,
        "some events are duplicated"
    );
    Ok(())
}

/// Guarantee 9: concurrent appends with `Any` all succeed.
pub(crate) async fn appends_with_any_all_succeed(
    store: Arc<dyn EventStore>,
    _: Options,
) -> CaseResult {
    const TASKS: usize = 20;
    let s = stream("flood-1");
    let results = race(TASKS, |t| {
        let (store, s) = (store.clone(), s.clone());
        async move {
            store
                .append_to_stream(&s, ExpectedVersion::Any, vec![event(t)])
                .await
        }
    })
    .await?;
    for result in results {
        result.step("append with Any")?;
    }
    let stored = store.read_stream_to_end(&s).await.step("read")?;
    ensure!(
        stored.len() == TASKS && versions_are_contiguous(&stored),
        "stream holds versions {:?}",
        stored.iter().map(|e| e.version).collect::<Vec<_>>()
    );
    Ok(())
}

/// Guarantee 5 under concurrency: two copies of one append racing write it
/// once and both get the same result; a changed copy is refused.
pub(crate) async fn racing_retries_of_one_append_write_once(
    store: Arc<dyn EventStore>,
    _: Options,
) -> CaseResult {
    for round in 0..10 {
        let s = stream(&format!("retry-{round}"));
        let request = AppendRequest::to_stream(
            s.clone(),
            ExpectedVersion::NoStream,
            (0..3).map(|i| tagged(&[("i", i)])).collect(),
        );
        let results = race(2, |_| {
            let (store, request) = (store.clone(), request.clone());
            async move { store.append(request).await }
        })
        .await?;
        let mut outcomes = Vec::new();
        for result in results {
            outcomes.push(result.step("racing retry")?);
        }
        ensure!(
            outcomes[0] == outcomes[1],
            "round {round}: the two copies got different results"
        );
        let stored = store.read_stream_to_end(&s).await.step("read")?;
        ensure!(
            stored.len() == 3,
            "round {round}: stream holds {} events",
            stored.len()
        );

        let first_id = request.streams()[0].events[0].event_id();
        let changed = tagged(&[("i", 99)]).with_id(first_id);
        let result = store
            .append_to_stream(&s, ExpectedVersion::Any, vec![changed])
            .await;
        ensure!(
            matches!(result, Err(AppendError::EventIdReused { event_id }) if event_id == first_id),
            "round {round}: a changed copy gave {result:?}"
        );
    }
    Ok(())
}

/// Guarantee 10: a waiter on the head watch wakes when an append commits.
pub(crate) async fn head_watch_wakes_after_commit(
    store: Arc<dyn EventStore>,
    _: Options,
) -> CaseResult {
    let mut watch = store.watch_head();
    ensure!(
        watch.current() == Position::START,
        "a new store's head is {}",
        watch.current()
    );
    let waiter = tokio::spawn(async move {
        tokio::time::timeout(PATIENCE, watch.wait_past(Position::START)).await
    });
    tokio::task::yield_now().await;
    let outcome = store
        .append_to_stream(&stream("account-1"), ExpectedVersion::Any, vec![event(0)])
        .await
        .step("append")?;
    let woke = waiter
        .await
        .step("waiter")?
        .map_err(|_| "the waiter was not woken".to_owned())?
        .step("head watch")?;
    ensure!(
        Some(woke) == outcome.last_position(),
        "woke at {woke}, the append ended at {:?}",
        outcome.last_position()
    );
    let later = store.watch_head();
    ensure!(
        later.current() == woke,
        "a new watch starts at {}, not {woke}",
        later.current()
    );
    Ok(())
}

/// Guarantee 4 under concurrency: tasks append to overlapping pairs of
/// streams, each append naming both streams' versions, retrying conflicts.
/// Every append lands whole (both its events, next to each other in the
/// log) or not at all, and each stream's versions stay contiguous.
pub(crate) async fn racing_multi_stream_appends_are_all_or_nothing(
    store: Arc<dyn EventStore>,
    _: Options,
) -> CaseResult {
    const TASKS: usize = 8;
    const APPENDS: usize = 15;
    const STREAMS: usize = 4;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..APPENDS {
                let a = stream(&format!("pair-{}", (t + i) % STREAMS));
                let b = stream(&format!("pair-{}", (t + i + 1 + i % 2) % STREAMS));
                loop {
                    let va = store.stream_version(&a).await.step("version a")?;
                    let vb = store.stream_version(&b).await.step("version b")?;
                    let request = AppendRequest::new()
                        .stream(
                            a.clone(),
                            ExpectedVersion::Exact(va.unwrap_or(0)),
                            vec![tagged(&[("t", t), ("i", i), ("side", 0)])],
                        )
                        .stream(
                            b.clone(),
                            ExpectedVersion::Exact(vb.unwrap_or(0)),
                            vec![tagged(&[("t", t), ("i", i), ("side", 1)])],
                        );
                    match store.append(request).await {
                        Ok(_) => break,
                        Err(AppendError::Conflict { .. }) => continue,
                        Err(e) => return Err(format!("append: {e}")),
                    }
                }
            }
            Ok::<(), String>(())
        }));
    }
    for task in tasks {
        task.await.step("task")??;
    }
    let log = read_log(&*store).await.step("read all")?;
    ensure!(
        log.len() == TASKS * APPENDS * 2,
        "the log holds {} events, expected {}",
        log.len(),
        TASKS * APPENDS * 2
    );
    for pair in log.chunks(2) {
        let tags = |e: &crate::RecordedEvent| {
            (
                read_tag(&e.payload, "t"),
                read_tag(&e.payload, "i"),
                read_tag(&e.payload, "side"),
            )
        };
        let (first, second) = (tags(&pair[0]), tags(&pair[1]));
        ensure!(
            first.0 == second.0 && first.1 == second.1 && first.2 == Some(0) && second.2 == Some(1),
            "an append's events are not next to each other in the log: {first:?} then {second:?}"
        );
    }
    for s in 0..STREAMS {
        let stored = store
            .read_stream_to_end(&stream(&format!("pair-{s}")))
            .await
            .step("read stream")?;
        ensure!(
            versions_are_contiguous(&stored),
            "pair-{s} versions are not contiguous"
        );
    }
    Ok(())
}
