//! The event bus routes committed events by pattern, in priority order,
//! through its middleware, and keeps subscribers apart: a failing, a
//! panicking or a slow one never stops the others.

use std::error::Error;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use annals_core::{
    AppendRequest, EventStore, ExpectedVersion, InMemoryStore, Metadata, NewEvent, Payload,
    Position, RecordedEvent, StreamId, Timestamp,
};
use annals_projections::bus::{
    routing_key, Counts, EventBus, Flow, InvalidPattern, Lag, Pattern, PatternProblem,
    SubscribeError, SubscribeOptions,
};
use annals_projections::HandlerError;
use proptest::prelude::*;

type TestResult = Result<(), Box<dyn Error>>;

/// Appends one event of type `event_type` to `stream` and returns its
/// position.
async fn emit(
    store: &InMemoryStore,
    stream: &str,
    event_type: &str,
) -> Result<Position, Box<dyn Error>> {
    let event = NewEvent::new(event_type, 1, Payload::from_json("{}")?)?;
    let request =
        AppendRequest::to_stream(StreamId::new(stream)?, ExpectedVersion::Any, vec![event]);
    let outcome = store.append(request).await?;
    Ok(outcome
        .last_position()
        .ok_or("an append of one event has a position")?)
}

/// Waits until the bus's counts satisfy `done`, for five seconds at most.
async fn until<S>(
    bus: &EventBus<S>,
    done: impl Fn(&Counts) -> bool,
) -> Result<Counts, Box<dyn Error>>
where
    S: EventStore + Clone + 'static,
{
    for _ in 0..5_000 {
        let counts = bus.counts();
        if done(&counts) {
            return Ok(counts);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Err(format!("the bus did not get there: {:?}", bus.counts()).into())
}

/// A handler that records the position of every event it gets.
fn recorder(
    seen: &Arc<Mutex<Vec<Position>>>,
) -> impl Fn(RecordedEvent) -> std::future::Ready<Result<(), HandlerError>> + Send + Sync + 'static
{
    let seen = seen.clone();
    move |event| {
        seen.lock()
            .expect("no handler panics holding it")
            .push(event.position);
        std::future::ready(Ok(()))
    }
}

fn positions(seen: &Arc<Mutex<Vec<Position>>>) -> Vec<u64> {
    seen.lock()
        .expect("no handler panics holding it")
        .iter()
        .map(|p| p.0)
        .collect()
}

/// The model: a pattern is `*`, or two parts around one dot, each `*` or
/// a word; `*` takes any word.
fn reference_matches(pattern: &str, key: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let (Some((pc, pt)), Some((kc, kt))) = (pattern.split_once('.'), key.split_once('.')) else {
        return false;
    };
    (pc == "*" || pc == kc) && (pt == "*" || pt == kt)
}

fn reference_valid(pattern: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let parts: Vec<&str> = pattern.split('.').collect();
    parts.len() == 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && (*p == "*" || !p.contains('*')))
}

fn recorded(stream: &str, event_type: &str) -> Result<RecordedEvent, Box<dyn Error>> {
    Ok(
        NewEvent::new(event_type, 1, Payload::from_json("{}")?)?.into_recorded(
            StreamId::new(stream)?,
            1,
            Position(1),
            Timestamp::now(),
        ),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn pattern_matches_as_the_reference_matcher_does(
        pattern_category in prop::sample::select(vec!["account", "parcel", "*"]),
        pattern_type in prop::sample::select(vec!["Opened", "Shipped", "*"]),
        whole in any::<bool>(),
        category in prop::sample::select(vec!["account", "parcel", "loan"]),
        event_type in prop::sample::select(vec!["Opened", "Shipped", "Closed"]),
    ) {
        let text = if whole { "*".to_owned() } else { format!("{pattern_category}.{pattern_type}") };
        let pattern = Pattern::new(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let event = recorded(&format!("{category}-1"), event_type)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let key = routing_key(&event);
        prop_assert_eq!(&key, &format!("{category}.{event_type}"));
        prop_assert_eq!(pattern.matches(&event), reference_matches(&text, &key));
        prop_assert_eq!(pattern.matches_key(&key), reference_matches(&text, &key));
        prop_assert_eq!(pattern.to_string(), text);
    }

    #[test]
    fn pattern_is_refused_exactly_when_the_reference_finds_it_malformed(text in "[a.*]{0,6}") {
        prop_assert_eq!(Pattern::new(&text).is_ok(), reference_valid(&text), "{:?}", text);
    }
}

#[tokio::test]
async fn bad_pattern_fails_with_invalid_pattern() -> TestResult {
    let bus = EventBus::new(InMemoryStore::new());
    let cases = [
        ("account", PatternProblem::NoDot),
        ("account.", PatternProblem::EmptyPart),
        (".Opened", PatternProblem::EmptyPart),
        ("account.Opened.v2", PatternProblem::MoreThanOneDot),
        ("acc*.Opened", PatternProblem::WildcardInsideWord),
        ("account.Open*", PatternProblem::WildcardInsideWord),
    ];
    for (pattern, problem) in cases {
        match bus.subscribe(pattern, |_| async { Ok(()) }) {
            Err(SubscribeError::Pattern(InvalidPattern {
                pattern: refused,
                problem: found,
                ..
            })) => {
                assert_eq!((refused.as_str(), found), (pattern, problem));
            }
            other => panic!("{pattern}: expected an invalid pattern, got {other:?}"),
        }
    }
    Ok(())
}

#[tokio::test]
async fn zero_buffer_fails_with_invalid_options() -> TestResult {
    let bus = EventBus::new(InMemoryStore::new());
    let refused = bus
        .subscribe_with("*", SubscribeOptions::new().buffer(0), |_| async { Ok(()) })
        .err();
    assert_eq!(
        refused,
        Some(SubscribeError::InvalidOptions {
            setting: "buffer",
            reason: "must be at least 1"
        })
    );
    Ok(())
}

#[tokio::test]
async fn subscribers_get_only_the_events_their_pattern_selects() -> TestResult {
    let store = InMemoryStore::new();
    let bus = EventBus::new(store.clone());
    let (opened, accounts, all) = (Arc::default(), Arc::default(), Arc::default());
    let _a = bus.subscribe("*.Opened", recorder(&opened))?;
    let _b = bus.subscribe("account.*", recorder(&accounts))?;
    let _c = bus.subscribe("*", recorder(&all))?;
    let running = bus.start().await?;
    emit(&store, "account-1", "Opened").await?;
    emit(&store, "parcel-1", "Opened").await?;
    emit(&store, "account-1", "Closed").await?;
    until(&bus, |c| c.delivered == 7).await?;
    assert_eq!(positions(&opened), [1, 2]);
    assert_eq!(positions(&accounts), [1, 3]);
    assert_eq!(positions(&all), [1, 2, 3]);
    running.stop().await;
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn subscribers_are_handed_each_event_in_priority_order() -> TestResult {
    let store = InMemoryStore::new();
    let bus = EventBus::new(store.clone());
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut subscriptions = Vec::new();
    for (name, priority) in [("low", 10), ("high", 90), ("default", 50)] {
        let order = order.clone();
        let options = SubscribeOptions::new().priority(priority);
        subscriptions.push(bus.subscribe_with("*", options, move |event| {
            order
                .lock()
                .expect("not poisoned")
                .push((event.position.0, name));
            async { Ok(()) }
        })?);
    }
    // Let every subscriber reach its empty buffer before events flow.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let running = bus.start().await?;
    for _ in 0..3 {
        emit(&store, "account-1", "Deposited").await?;
    }
    until(&bus, |c| c.delivered == 9).await?;
    let order = order.lock().expect("not poisoned").clone();
    for position in 1..=3 {
        let names: Vec<&str> = order
            .iter()
            .filter(|(p, _)| *p == position)
            .map(|(_, n)| *n)
            .collect();
        assert_eq!(names, ["high", "default", "low"], "event {position}");
    }
    running.stop().await;
    Ok(())
}

#[tokio::test]
async fn middleware_drops_and_enriches_in_registration_order() -> TestResult {
    let store = InMemoryStore::new();
    let bus = EventBus::new(store.clone());
    let observed_enriched = Arc::new(AtomicU64::new(0));
    bus.middleware(|event| {
        if event.event_type.as_str() == "Noise" {
            Flow::Drop
        } else {
            Flow::Continue
        }
    })
    .middleware(|event| {
        event
            .metadata
            .fields
            .insert("source".into(), serde_json::json!("bus"));
        Flow::Continue
    });
    let seen_by_observer = observed_enriched.clone();
    bus.middleware(move |event| {
        if event.metadata.fields.contains_key("source") {
            seen_by_observer.fetch_add(1, Ordering::SeqCst);
        }
        Flow::Continue
    });
    let got = Arc::new(Mutex::new(Vec::<Metadata>::new()));
    let into = got.clone();
    let _s = bus.subscribe("*", move |event| {
        into.lock()
            .expect("not poisoned")
            .push(event.metadata.clone());
        async { Ok(()) }
    })?;
    let running = bus.start().await?;
    emit(&store, "account-1", "Opened").await?;
    emit(&store, "account-1", "Noise").await?;
    emit(&store, "account-2", "Opened").await?;
    let counts = until(&bus, |c| c.published == 3 && c.delivered == 2).await?;
    assert_eq!(counts.dropped, 1);
    // The dropped event went no further than the first middleware.
    assert_eq!(observed_enriched.load(Ordering::SeqCst), 2);
    let got = got.lock().expect("not poisoned").clone();
    assert_eq!(got.len(), 2);
    assert!(got
        .iter()
        .all(|m| m.fields.get("source") == Some(&serde_json::json!("bus"))));
    running.stop().await;
    Ok(())
}

#[tokio::test]
async fn erroring_and_panicking_handlers_do_not_stop_the_others_and_are_counted() -> TestResult {
    let store = InMemoryStore::new();
    let bus = EventBus::new(store.clone());
    let healthy = Arc::default();
    let retried = SubscribeOptions::new()
        .retries(2)
        .retry_pause(Duration::ZERO);
    let _failing = bus.subscribe_with("*", retried, |_| async {
        Err::<(), HandlerError>("refused".into())
    })?;
    let _panicking = bus.subscribe("*", |_| async { panic!("handler bug") })?;
    let _healthy = bus.subscribe("*", recorder(&healthy))?;
    let running = bus.start().await?;
    for _ in 0..4 {
        emit(&store, "account-1", "Deposited").await?;
    }
    // 4 events: 3 tries each for the failing one, 1 for each other.
    let counts = until(&bus, |c| c.attempts == 20).await?;
    assert_eq!(positions(&healthy), [1, 2, 3, 4]);
    assert_eq!(counts.delivered, 4);
    assert_eq!(counts.failed, 16);
    assert_eq!(counts.given_up, 8);
    assert!(
        (counts.error_rate() - 0.8).abs() < 1e-9,
        "{}",
        counts.error_rate()
    );
    running.stop().await;
    Ok(())
}

/// A handler that records positions and takes a while over each event.
fn slow_recorder(
    seen: &Arc<Mutex<Vec<Position>>>,
) -> impl Fn(
    RecordedEvent,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), HandlerError>> + Send>>
       + Send
       + Sync
       + 'static {
    let seen = seen.clone();
    move |event| {
        let seen = seen.clone();
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            seen.lock().expect("not poisoned").push(event.position);
            Ok(())
        })
    }
}

#[tokio::test]
async fn slow_subscriber_with_catch_up_reads_what_it_missed_from_the_log() -> TestResult {
    let store = InMemoryStore::new();
    let bus = EventBus::new(store.clone());
    let middleware_calls = Arc::new(AtomicU64::new(0));
    let calls = middleware_calls.clone();
    bus.middleware(move |_| {
        calls.fetch_add(1, Ordering::SeqCst);
        Flow::Continue
    });
    let seen = Arc::default();
    let tiny = SubscribeOptions::new().buffer(1).lag(Lag::CatchUp);
    let _slow = bus.subscribe_with("*", tiny, slow_recorder(&seen))?;
    let running = bus.start().await?;
    for _ in 0..20 {
        emit(&store, "account-1", "Deposited").await?;
    }
    let counts = until(&bus, |c| c.delivered == 20).await?;
    assert_eq!(positions(&seen), (1..=20).collect::<Vec<_>>());
    assert_eq!((counts.published, counts.missed), (20, 0));
    // The events it re-read from the log passed the middleware again.
    assert!(middleware_calls.load(Ordering::SeqCst) > 20);
    running.stop().await;
    Ok(())
}

#[tokio::test]
async fn slow_subscriber_with_skip_is_told_how_many_events_it_missed() -> TestResult {
    let store = InMemoryStore::new();
    let bus = EventBus::new(store.clone());
    let told = Arc::new(AtomicU64::new(0));
    let notices = told.clone();
    let seen = Arc::default();
    let tiny = SubscribeOptions::new()
        .buffer(1)
        .lag(Lag::Skip)
        .on_lagged(move |lagged| {
            notices.fetch_add(lagged.missed, Ordering::SeqCst);
        });
    let _slow = bus.subscribe_with("*", tiny, slow_recorder(&seen))?;
    let running = bus.start().await?;
    for _ in 0..20 {
        emit(&store, "account-1", "Deposited").await?;
    }
    let counts = until(&bus, |c| c.published == 20 && c.delivered + c.missed == 20).await?;
    // The notice comes once the subscriber reaches the gap.
    for _ in 0..1_000 {
        if told.load(Ordering::SeqCst) == counts.missed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(counts.missed > 0, "{counts:?}");
    assert_eq!(told.load(Ordering::SeqCst), counts.missed);
    let got = positions(&seen);
    assert_eq!(u64::try_from(got.len())?, counts.delivered);
    assert!(got.windows(2).all(|w| w[0] < w[1]), "{got:?}");
    running.stop().await;
    Ok(())
}

#[tokio::test]
async fn dropped_or_unsubscribed_subscription_gets_no_more_events() -> TestResult {
    let store = InMemoryStore::new();
    let bus = EventBus::new(store.clone());
    let (dropped, unsubscribed, kept) = (Arc::default(), Arc::default(), Arc::default());
    let first = bus.subscribe("*", recorder(&dropped))?;
    let second = bus.subscribe("*", recorder(&unsubscribed))?;
    let _kept = bus.subscribe("*", recorder(&kept))?;
    let running = bus.start().await?;
    emit(&store, "account-1", "Opened").await?;
    until(&bus, |c| c.delivered == 3).await?;
    drop(first);
    second.unsubscribe();
    emit(&store, "account-1", "Deposited").await?;
    emit(&store, "account-1", "Deposited").await?;
    until(&bus, |c| c.published == 3 && c.delivered == 5).await?;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(positions(&dropped), [1]);
    assert_eq!(positions(&unsubscribed), [1]);
    assert_eq!(positions(&kept), [1, 2, 3]);
    assert_eq!(bus.counts().delivered, 5);
    running.stop().await;
    Ok(())
}

#[tokio::test]
async fn start_at_a_saved_position_delivers_what_came_after_it() -> TestResult {
    let store = InMemoryStore::new();
    for _ in 0..3 {
        emit(&store, "account-1", "Deposited").await?;
    }
    let bus = EventBus::new(store.clone());
    let seen = Arc::default();
    let _s = bus.subscribe("*", recorder(&seen))?;
    let running = bus.start_at(Position(1))?;
    until(&bus, |c| c.delivered == 2).await?;
    assert_eq!(positions(&seen), [2, 3]);
    assert!(matches!(
        bus.start_at(Position::START),
        Err(annals_projections::bus::BusStartError::AlreadyRunning)
    ));
    running.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_bus_started_live_skips_what_was_committed_before() -> TestResult {
    let store = InMemoryStore::new();
    emit(&store, "account-1", "Opened").await?;
    let bus = EventBus::new(store.clone());
    let seen = Arc::default();
    let _s = bus.subscribe("*", recorder(&seen))?;
    let running = bus.start().await?;
    emit(&store, "account-1", "Deposited").await?;
    until(&bus, |c| c.delivered == 1).await?;
    assert_eq!(positions(&seen), [2]);
    assert_eq!(bus.counts().published, 1);
    running.stop().await;
    Ok(())
}

#[tokio::test]
async fn stopped_or_dropped_running_bus_publishes_no_more() -> TestResult {
    let store = InMemoryStore::new();
    let bus = EventBus::new(store.clone());
    let seen = Arc::default();
    let _s = bus.subscribe("*", recorder(&seen))?;
    let running = bus.start().await?;
    emit(&store, "account-1", "Opened").await?;
    until(&bus, |c| c.delivered == 1).await?;
    running.stop().await;
    emit(&store, "account-1", "Deposited").await?;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(bus.counts().published, 1);

    // Started again from where it stopped, then dropped.
    let running = bus.start_at(Position(1))?;
    until(&bus, |c| c.delivered == 2).await?;
    drop(running);
    tokio::time::sleep(Duration::from_millis(20)).await;
    emit(&store, "account-1", "Deposited").await?;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(bus.counts().published, 2);
    assert_eq!(positions(&seen), [1, 2]);
    Ok(())
}

#[tokio::test]
async fn restarting_at_an_earlier_position_delivers_those_events_again() -> TestResult {
    let store = InMemoryStore::new();
    let bus = EventBus::new(store.clone());
    let seen = Arc::default();
    let _s = bus.subscribe("*", recorder(&seen))?;
    let running = bus.start().await?;
    for _ in 0..3 {
        emit(&store, "account-1", "Deposited").await?;
    }
    until(&bus, |c| c.delivered == 3).await?;
    running.stop().await;
    let running = bus.start_at(Position(1))?;
    until(&bus, |c| c.delivered == 5).await?;
    assert_eq!(positions(&seen), [1, 2, 3, 2, 3]);
    running.stop().await;
    Ok(())
}

#[tokio::test]
/// A catch-up runs the middleware before the pattern, as live delivery
/// does: a renamed event reaches the subscriber of its new name either way.
async fn catch_up_applies_middleware_before_the_pattern_as_live_delivery_does() -> TestResult {
    let store = InMemoryStore::new();
    let bus = EventBus::new(store.clone());
    bus.middleware(|event| {
        if event.event_type.as_str() == "Deposited" {
            event.event_type = annals_core::EventType::new("MoneyIn").expect("valid");
        }
        Flow::Continue
    });
    let seen = Arc::default();
    let tiny = SubscribeOptions::new().buffer(1).lag(Lag::CatchUp);
    let _slow = bus.subscribe_with("account.MoneyIn", tiny, slow_recorder(&seen))?;
    let running = bus.start().await?;
    for _ in 0..20 {
        emit(&store, "account-1", "Deposited").await?;
    }
    until(&bus, |c| c.published == 20).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = positions(&seen);
    assert_eq!(
        got,
        (1..=20).collect::<Vec<_>>(),
        "delivered {} of 20",
        got.len()
    );
    running.stop().await;
    Ok(())
}

#[tokio::test]
/// Unsubscribing ends the retries of a delivery in progress.
async fn unsubscribe_ends_retries_in_progress() -> TestResult {
    let store = InMemoryStore::new();
    let bus = EventBus::new(store.clone());
    let opts = SubscribeOptions::new()
        .retries(u32::MAX)
        .retry_pause(Duration::from_millis(1));
    let sub = bus.subscribe_with("*", opts, |_e| async {
        Err::<(), HandlerError>("no".into())
    })?;
    let running = bus.start().await?;
    emit(&store, "account-1", "Opened").await?;
    until(&bus, |c| c.attempts > 5).await?;
    drop(sub);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let a = bus.counts().attempts;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let b = bus.counts().attempts;
    assert_eq!(a, b, "the handler is still called after unsubscribe");
    running.stop().await;
    Ok(())
}

#[tokio::test]
/// A subscriber that is behind catches up only to where the bus read: a
/// stopped bus delivers nothing committed after it stopped, and a restart
/// where it stopped delivers each event once, in order.
async fn stopped_bus_delivers_nothing_committed_after_it_stopped() -> TestResult {
    let store = InMemoryStore::new();
    let bus = EventBus::new(store.clone());
    let seen = Arc::default();
    let tiny = SubscribeOptions::new().buffer(4).lag(Lag::CatchUp);
    let _slow = bus.subscribe_with("*", tiny, slow_recorder(&seen))?;
    let running = bus.start().await?;
    for _ in 0..50 {
        emit(&store, "account-1", "Deposited").await?;
    }
    until(&bus, |c| c.published == 50).await?;
    running.stop().await;
    for _ in 0..5 {
        emit(&store, "account-1", "Deposited").await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counts = bus.counts();
    assert_eq!(counts.delivered, 50, "delivered past a stopped bus");
    // Restarted where it stopped: the five new events, once each.
    let running = bus.start_at(Position(50))?;
    until(&bus, |c| c.delivered == 55).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(positions(&seen), (1..=55).collect::<Vec<_>>());
    running.stop().await;
    Ok(())
}

#[tokio::test]
/// Attempts are counted with their outcome: attempts equal delivered plus
/// failed, even while a handler runs.
async fn attempts_equal_delivered_plus_failed_while_a_handler_runs() -> TestResult {
    let store = InMemoryStore::new();
    let bus = EventBus::new(store.clone());
    let _s = bus.subscribe("*", |_e| async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(())
    })?;
    let running = bus.start().await?;
    emit(&store, "account-1", "Opened").await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mid = bus.counts();
    assert_eq!(mid.attempts, mid.delivered + mid.failed, "{mid:?}");
    let done = until(&bus, |c| c.delivered == 1).await?;
    assert_eq!((done.attempts, done.delivered), (1, 1));
    running.stop().await;
    Ok(())
}

/// Outside a runtime, subscribing and starting fail with a typed error and
/// leave nothing registered.
#[test]
fn subscribing_or_starting_outside_a_runtime_fails_with_no_runtime() {
    let store = InMemoryStore::new();
    let bus = EventBus::new(store);
    let subscribed = bus.subscribe("*", |_event| async { Ok(()) });
    assert!(matches!(subscribed, Err(SubscribeError::NoRuntime)));
    let started = bus.start_at(Position::START);
    assert!(matches!(
        started,
        Err(annals_projections::bus::BusStartError::NoRuntime)
    ));
    assert_eq!(bus.counts().published, 0);
}
