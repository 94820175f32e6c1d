//! Durable handlers: retries on a manual clock, permanent failures and
//! panics, per-key order under a worker pool, claims between executors,
//! and bad settings. Each scenario on one store is written once, as
//! `<test>_on(store)`, and runs on the in-memory store and, when
//! `ANNALS_PG_URL` names a server, on PostgreSQL. Two executors on one
//! database open one SQLite file twice; their PostgreSQL counterpart, two
//! store instances on one schema, is in the facade's
//! `tests/postgres_handlers.rs`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use annals_core::testkit::bank::{Account, AccountCommand, AccountEvent};
use annals_core::{
    Claim, CommandContext, EventStore, HandlerStore, InMemoryStore, NewRequest, Position, ReadAll,
    Repository, RequestFilter, RequestStatus, Timestamp, CLAIM_EXPIRED,
};
use annals_projections::handlers::{
    permanent, Attempt, ErrorReport, EventHandler, HandlerOptions, Handlers, HandlersStartError,
};
use annals_projections::saga::ManualClock;
use annals_projections::{async_trait, Envelope, HandlerError};
use annals_sqlite::SqliteStore;

#[path = "common/postgres.rs"]
mod postgres;

use postgres::TestResult;

/// What the scenarios need of a store.
trait Store: EventStore + HandlerStore + Clone + 'static {}

impl<S: EventStore + HandlerStore + Clone + 'static> Store for S {}

async fn open(store: &(impl EventStore + Clone + 'static), id: &str) -> TestResult {
    let accounts = Repository::<Account, _>::new(store.clone())?;
    let open = AccountCommand::Open { owner: id.into() };
    accounts.execute(id, open, &CommandContext::new()).await?;
    Ok(())
}

async fn deposit(store: &(impl EventStore + Clone + 'static), id: &str, amount: u64) -> TestResult {
    let accounts = Repository::<Account, _>::new(store.clone())?;
    accounts
        .execute(
            id,
            AccountCommand::Deposit { amount },
            &CommandContext::new(),
        )
        .await?;
    Ok(())
}

/// Fails until `fixed`, counting its attempts.
struct Flaky {
    fixed: Arc<AtomicBool>,
    attempts: Arc<Mutex<Vec<u32>>>,
}

#[async_trait]
impl EventHandler for Flaky {
    type Events = AccountEvent;
    const NAME: &'static str = "flaky";

    fn options(&self) -> HandlerOptions {
        HandlerOptions::default()
            .max_errors(3)
            .backoff(Duration::from_secs(1), Duration::from_secs(10))
    }

    async fn handle(
        &self,
        _: &Envelope<AccountEvent>,
        attempt: &Attempt,
    ) -> Result<(), HandlerError> {
        self.attempts
            .lock()
            .expect("not poisoned")
            .push(attempt.number());
        if self.fixed.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err("the service is down".into())
        }
    }
}

#[tokio::test]
async fn retries_wait_within_the_jittered_backoff_then_die_and_run_again_when_requeued(
) -> TestResult {
    retries_wait_within_the_jittered_backoff_then_die_and_run_again_when_requeued_on(
        InMemoryStore::new(),
    )
    .await
}

#[tokio::test]
async fn retries_wait_within_the_jittered_backoff_then_die_and_run_again_when_requeued_on_postgres(
) -> TestResult {
    postgres::with_store(
        "retries_wait_within_the_jittered_backoff_then_die_and_run_again_when_requeued_on_postgres",
        retries_wait_within_the_jittered_backoff_then_die_and_run_again_when_requeued_on,
    )
    .await
}

async fn retries_wait_within_the_jittered_backoff_then_die_and_run_again_when_requeued_on<
    S: Store,
>(
    store: S,
) -> TestResult {
    let clock = ManualClock::starting_at(Timestamp::from_unix_micros(1_700_000_000_000_000));
    let fixed = Arc::new(AtomicBool::new(false));
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let mut handlers = Handlers::new(store.clone())
        .on(
            "account.Opened",
            Flaky {
                fixed: fixed.clone(),
                attempts: attempts.clone(),
            },
        )
        .clock(clock.clone())
        .jitter_seed(7)
        .cooperative()?;
    open(&store, "ada").await?;
    let letters = handlers.dead_letters();
    let request = |letters: annals_projections::handlers::DeadLetters<S>| async move {
        let all = letters.list(&RequestFilter::all()).await?;
        assert_eq!(all.len(), 1, "one request for one event and handler");
        Ok::<_, Box<dyn std::error::Error>>(all[0].clone())
    };

    let first = handlers.run_until_idle().await?;
    assert_eq!((first.events, first.requests, first.executed), (1, 1, 1));
    // Each failure is due again within the backoff's ceiling for its
    // count (1 s, then 2 s), and not before it is due.
    for (failures, ceiling) in [(1, 1), (2, 2)] {
        let failed = request(letters.clone()).await?;
        assert_eq!(
            (failed.status, failed.failures),
            (RequestStatus::Pending, failures)
        );
        let last = failed.errors.last().ok_or("an error recorded")?;
        assert_eq!(last.error, "the service is down");
        let wait = failed.due_at.as_unix_micros() - last.failed_at.as_unix_micros();
        assert!(
            (0..=ceiling * 1_000_000).contains(&wait),
            "retry {failures} waits {wait} µs, beyond the ceiling of {ceiling} s"
        );
        let early = handlers.run_until_idle().await?;
        if wait > 0 {
            assert_eq!(early.executed, 0, "ran before it was due");
        }
        clock.advance(Duration::from_secs(u64::try_from(ceiling)?));
        assert_eq!(handlers.run_until_idle().await?.executed, 1);
    }
    let dead = request(letters.clone()).await?;
    assert_eq!(
        (dead.status, dead.failures, dead.errors.len()),
        (RequestStatus::Dead, 3, 3)
    );
    assert_eq!(*attempts.lock().expect("not poisoned"), [1, 2, 3]);
    clock.advance(Duration::from_secs(3600));
    assert_eq!(
        handlers.run_until_idle().await?.executed,
        0,
        "a dead request runs no more"
    );
    let counts = handlers.counts().await?;
    assert_eq!(
        (
            counts.requests.dead,
            counts.executions.retried,
            counts.executions.died
        ),
        (1, 2, 1)
    );

    fixed.store(true, Ordering::SeqCst);
    assert!(letters.requeue(dead.id).await?);
    assert_eq!(handlers.run_until_idle().await?.executed, 1);
    let done = request(letters.clone()).await?;
    assert_eq!(
        (done.status, done.errors.len()),
        (RequestStatus::Done, 3),
        "history kept"
    );
    assert_eq!(*attempts.lock().expect("not poisoned"), [1, 2, 3, 4]);
    assert!(
        !letters.requeue(dead.id).await?,
        "a done request is not requeued"
    );
    assert!(
        !letters.discard(dead.id, "no").await?,
        "a done request is not discarded"
    );
    Ok(())
}

/// Panics on openings; refuses deposits for good.
struct Broken;

#[async_trait]
impl EventHandler for Broken {
    type Events = AccountEvent;
    const NAME: &'static str = "broken";

    async fn handle(
        &self,
        event: &Envelope<AccountEvent>,
        _: &Attempt,
    ) -> Result<(), HandlerError> {
        match &event.event {
            AccountEvent::Opened { .. } => panic!("the template is missing"),
            _ => Err(permanent("the partner deleted this account")),
        }
    }
}

#[tokio::test]
async fn permanent_failure_dies_at_once_and_a_panic_is_retried_and_reported_with_its_stack(
) -> TestResult {
    permanent_failure_dies_at_once_and_a_panic_is_retried_and_reported_with_its_stack_on(
        InMemoryStore::new(),
    )
    .await
}

#[tokio::test]
async fn permanent_failure_dies_at_once_and_a_panic_is_retried_and_reported_with_its_stack_on_postgres(
) -> TestResult {
    postgres::with_store("permanent_failure_dies_at_once_and_a_panic_is_retried_and_reported_with_its_stack_on_postgres", permanent_failure_dies_at_once_and_a_panic_is_retried_and_reported_with_its_stack_on).await
}

async fn permanent_failure_dies_at_once_and_a_panic_is_retried_and_reported_with_its_stack_on<
    S: Store,
>(
    store: S,
) -> TestResult {
    let reports: Arc<Mutex<Vec<ErrorReport>>> = Arc::default();
    let seen = reports.clone();
    let mut handlers = Handlers::new(store.clone())
        .on("*", Broken)
        .clock(ManualClock::default())
        .error_reporter(move |report| seen.lock().expect("not poisoned").push(report.clone()))
        .cooperative()?;
    open(&store, "ada").await?;
    deposit(&store, "ada", 5).await?;
    handlers.run_until_idle().await?;
    let letters = handlers.dead_letters();
    let all = letters.list(&RequestFilter::all()).await?;
    let by_type: HashMap<&str, _> = all.iter().map(|r| (r.event_type.as_str(), r)).collect();
    let panicked = by_type["Opened"];
    assert_eq!(
        (panicked.status, panicked.failures),
        (RequestStatus::Pending, 1)
    );
    assert!(panicked.errors[0]
        .error
        .contains("panicked: the template is missing"));
    let refused = by_type["Deposited"];
    assert_eq!((refused.status, refused.failures), (RequestStatus::Dead, 1));
    assert_eq!(refused.errors[0].error, "the partner deleted this account");

    let reports = reports.lock().expect("not poisoned").clone();
    assert_eq!(reports.len(), 2, "{reports:?}");
    let panic = reports
        .iter()
        .find(|r| r.panicked)
        .ok_or("the panic reported")?;
    assert_eq!(
        (panic.error.as_str(), panic.dead),
        ("the template is missing", false)
    );
    let stack = panic.backtrace.as_deref().ok_or("the panic's stack")?;
    assert!(
        stack.contains("handlers"),
        "the stack names the handler: {stack}"
    );
    let dead = reports
        .iter()
        .find(|r| !r.panicked)
        .ok_or("the death reported")?;
    assert!(dead.dead && dead.backtrace.is_none());

    let listed = letters
        .list(
            &RequestFilter::dead()
                .handler("broken")
                .event_type("Deposited"),
        )
        .await?;
    assert_eq!(listed.len(), 1);
    assert!(
        letters
            .discard(listed[0].id, "account closed on purpose")
            .await?
    );
    let discarded = letters.list(&RequestFilter::all().id(listed[0].id)).await?;
    assert_eq!(discarded[0].status, RequestStatus::Discarded);
    assert_eq!(
        discarded[0].discard_reason.as_deref(),
        Some("account closed on purpose")
    );
    Ok(())
}

/// Records the order each stream's events ran in; the second event of
/// `account-0` always fails.
struct Ordered {
    ran: Arc<Mutex<Vec<(String, u64)>>>,
    in_flight: Arc<AtomicUsize>,
    most_at_once: Arc<AtomicUsize>,
}

#[async_trait]
impl EventHandler for Ordered {
    type Events = AccountEvent;
    const NAME: &'static str = "ordered";

    fn options(&self) -> HandlerOptions {
        HandlerOptions::default()
            .max_errors(1_000_000)
            .backoff(Duration::from_millis(1), Duration::from_millis(2))
    }

    fn ordering_key(&self, event: &Envelope<AccountEvent>) -> Option<String> {
        Some(event.stream_id.to_string())
    }

    async fn handle(
        &self,
        event: &Envelope<AccountEvent>,
        _: &Attempt,
    ) -> Result<(), HandlerError> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_at_once.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1)).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if event.stream_id.as_str() == "account-0" && event.version == 2 {
            return Err("poison".into());
        }
        let ran = (event.stream_id.to_string(), event.version);
        self.ran.lock().expect("not poisoned").push(ran);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_order_holds_under_a_worker_pool_and_a_poison_event_blocks_only_its_key(
) -> TestResult {
    per_key_order_holds_under_a_worker_pool_and_a_poison_event_blocks_only_its_key_on(
        InMemoryStore::new(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_order_holds_under_a_worker_pool_and_a_poison_event_blocks_only_its_key_on_postgres(
) -> TestResult {
    postgres::with_store("per_key_order_holds_under_a_worker_pool_and_a_poison_event_blocks_only_its_key_on_postgres", per_key_order_holds_under_a_worker_pool_and_a_poison_event_blocks_only_its_key_on).await
}

async fn per_key_order_holds_under_a_worker_pool_and_a_poison_event_blocks_only_its_key_on<
    S: Store,
>(
    store: S,
) -> TestResult {
    for account in 0..8 {
        let id = format!("{account}");
        open(&store, &id).await?;
        for amount in 1..=6 {
            deposit(&store, &id, amount).await?;
        }
    }
    let ran: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let most_at_once = Arc::new(AtomicUsize::new(0));
    let running = Handlers::new(store.clone())
        .on(
            "*",
            Ordered {
                ran: ran.clone(),
                in_flight: Arc::default(),
                most_at_once: most_at_once.clone(),
            },
        )
        .workers(4)
        .poll_interval(Duration::from_millis(5))
        .start()?;
    // Every stream but the poisoned one finishes: 7 × 7 events, and the
    // poisoned stream's first event.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while ran.lock().expect("not poisoned").len() < 7 * 7 + 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the other keys did not finish"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Give the poisoned key time to (wrongly) go on.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ran = ran.lock().expect("not poisoned").clone();
    let mut by_stream: HashMap<String, Vec<u64>> = HashMap::new();
    for (stream, version) in ran {
        by_stream.entry(stream).or_default().push(version);
    }
    for (stream, versions) in &by_stream {
        if stream == "account-0" {
            assert_eq!(versions, &[1], "the poisoned key went on past its poison");
        } else {
            assert_eq!(
                versions,
                &(1..=7).collect::<Vec<_>>(),
                "{stream} ran out of order"
            );
        }
    }
    assert!(
        most_at_once.load(Ordering::SeqCst) > 1,
        "keys never ran in parallel under 4 workers"
    );
    let counts = running.counts().await?;
    assert_eq!(counts.requests.done, 7 * 7 + 1);
    assert_eq!(counts.requests.pending + counts.requests.running, 6);
    running.stop().await;
    Ok(())
}

/// Counts runs per event, and notices two runs of one event at once.
struct Exclusive {
    running: Arc<Mutex<HashSet<annals_core::EventId>>>,
    runs: Arc<Mutex<HashMap<annals_core::EventId, u32>>>,
    overlaps: Arc<AtomicUsize>,
}

#[async_trait]
impl EventHandler for Exclusive {
    type Events = AccountEvent;
    const NAME: &'static str = "exclusive";

    async fn handle(
        &self,
        event: &Envelope<AccountEvent>,
        _: &Attempt,
    ) -> Result<(), HandlerError> {
        if !self
            .running
            .lock()
            .expect("not poisoned")
            .insert(event.event_id)
        {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        self.running
            .lock()
            .expect("not poisoned")
            .remove(&event.event_id);
        *self
            .runs
            .lock()
            .expect("not poisoned")
            .entry(event.event_id)
            .or_default() += 1;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_executors_on_one_database_never_run_a_request_twice() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("log.db");
    let first = SqliteStore::open(&path).await?;
    let second = SqliteStore::open(&path).await?;
    for account in 0..20 {
        open(&first, &format!("{account}")).await?;
        for amount in 1..=9 {
            deposit(&first, &format!("{account}"), amount).await?;
        }
    }
    let running = Arc::<Mutex<HashSet<_>>>::default();
    let runs = Arc::<Mutex<HashMap<_, u32>>>::default();
    let overlaps = Arc::new(AtomicUsize::new(0));
    let handler = || Exclusive {
        running: running.clone(),
        runs: runs.clone(),
        overlaps: overlaps.clone(),
    };
    let a = Handlers::new(first.clone())
        .on("*", handler())
        .workers(4)
        .start()?;
    let b = Handlers::new(second.clone())
        .on("*", handler())
        .workers(4)
        .start()?;
    a.wait_settled_within(Duration::from_secs(60)).await?;
    b.wait_settled_within(Duration::from_secs(60)).await?;
    let (ca, cb) = (a.counts().await?, b.counts().await?);
    a.stop().await;
    b.stop().await;
    assert_eq!(
        overlaps.load(Ordering::SeqCst),
        0,
        "a request ran in both executors at once"
    );
    let runs = runs.lock().expect("not poisoned");
    assert_eq!(runs.len(), 200, "every event ran");
    assert!(runs.values().all(|n| *n == 1), "a request ran twice");
    assert_eq!(ca.requests.done, 200);
    assert!(
        ca.executions.succeeded > 0 && cb.executions.succeeded > 0,
        "both executors took part: {} and {}",
        ca.executions.succeeded,
        cb.executions.succeeded
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_executors_claim_expires_and_the_request_runs_on_its_next_attempt() -> TestResult {
    a_dead_executors_claim_expires_and_the_request_runs_on_its_next_attempt_on(InMemoryStore::new())
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_executors_claim_expires_and_the_request_runs_on_its_next_attempt_on_postgres(
) -> TestResult {
    postgres::with_store(
        "a_dead_executors_claim_expires_and_the_request_runs_on_its_next_attempt_on_postgres",
        a_dead_executors_claim_expires_and_the_request_runs_on_its_next_attempt_on,
    )
    .await
}

async fn a_dead_executors_claim_expires_and_the_request_runs_on_its_next_attempt_on<S: Store>(
    store: S,
) -> TestResult {
    open(&store, "ada").await?;
    let opened = store
        .read_all(ReadAll::after(Position::START))
        .await?
        .events[0]
        .clone();
    // An executor claimed the request, then died: its claim holds 200 ms.
    let request = NewRequest {
        handler: "exclusive".into(),
        event_id: opened.event_id,
        position: opened.position,
        event_type: opened.event_type.clone(),
        stream_id: opened.stream_id.clone(),
        priority: 50,
        ordering_key: None,
    };
    store
        .enqueue_requests(&[], &[request], Timestamp::now())
        .await?;
    let claim = Claim {
        owner: "killed".into(),
        handlers: vec!["exclusive".into()],
        now: Timestamp::now(),
        lease: Duration::from_millis(200),
        limit: 1,
    };
    assert_eq!(store.claim_requests(&claim).await?.len(), 1);
    let runs = Arc::<Mutex<HashMap<_, u32>>>::default();
    let handler = Exclusive {
        running: Arc::default(),
        runs: runs.clone(),
        overlaps: Arc::default(),
    };
    let running = Handlers::new(store.clone())
        .on("*", handler)
        .poll_interval(Duration::from_millis(20))
        .start()?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        runs.lock().expect("not poisoned").is_empty(),
        "ran while the claim held"
    );
    running.wait_settled_within(Duration::from_secs(10)).await?;
    let all = store
        .list_requests(&RequestFilter::all(), Timestamp::now())
        .await?;
    assert_eq!(
        all.len(),
        1,
        "the processor made no second request for the pair"
    );
    assert_eq!((all[0].status, all[0].attempts), (RequestStatus::Done, 2));
    assert_eq!(all[0].errors[0].error, CLAIM_EXPIRED);
    assert_eq!(runs.lock().expect("not poisoned").values().sum::<u32>(), 1);
    running.stop().await;
    Ok(())
}

/// Its first run never ends; later runs succeed.
struct Slow {
    started: Arc<AtomicUsize>,
}

#[async_trait]
impl EventHandler for Slow {
    type Events = AccountEvent;
    const NAME: &'static str = "slow";

    async fn handle(&self, _: &Envelope<AccountEvent>, _: &Attempt) -> Result<(), HandlerError> {
        if self.started.fetch_add(1, Ordering::SeqCst) == 0 {
            // The first run ignores the stop signal: the grace period ends it.
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_releases_handlers_that_outlive_the_grace_period_for_the_next_executor() -> TestResult
{
    stop_releases_handlers_that_outlive_the_grace_period_for_the_next_executor_on(
        InMemoryStore::new(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_releases_handlers_that_outlive_the_grace_period_for_the_next_executor_on_postgres(
) -> TestResult {
    postgres::with_store(
        "stop_releases_handlers_that_outlive_the_grace_period_for_the_next_executor_on_postgres",
        stop_releases_handlers_that_outlive_the_grace_period_for_the_next_executor_on,
    )
    .await
}

async fn stop_releases_handlers_that_outlive_the_grace_period_for_the_next_executor_on<S: Store>(
    store: S,
) -> TestResult {
    open(&store, "ada").await?;
    let started = Arc::new(AtomicUsize::new(0));
    let first = Handlers::new(store.clone())
        .on(
            "*",
            Slow {
                started: started.clone(),
            },
        )
        .stop_grace(Duration::from_millis(50))
        .start()?;
    while started.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    first.stop().await;
    let released = store
        .list_requests(&RequestFilter::all(), Timestamp::now())
        .await?;
    assert_eq!(
        (
            released[0].status,
            released[0].attempts,
            released[0].failures
        ),
        (RequestStatus::Pending, 0, 0)
    );
    let second = Handlers::new(store.clone())
        .on(
            "*",
            Slow {
                started: started.clone(),
            },
        )
        .start()?;
    second.wait_settled_within(Duration::from_secs(10)).await?;
    second.stop().await;
    let done = store
        .list_requests(&RequestFilter::all(), Timestamp::now())
        .await?;
    // Released, its attempt uncounted: the second executor's run is its
    // first attempt.
    assert_eq!((done[0].status, done[0].attempts), (RequestStatus::Done, 1));
    assert_eq!(started.load(Ordering::SeqCst), 2);
    Ok(())
}

#[tokio::test]
async fn bad_settings_and_names_are_refused_before_anything_starts() {
    let store = InMemoryStore::new();
    let flaky = || Flaky {
        fixed: Arc::default(),
        attempts: Arc::default(),
    };
    let refused = |handlers: Handlers<InMemoryStore>| handlers.cooperative().err();
    assert!(matches!(
        refused(Handlers::new(store.clone())),
        Some(HandlersStartError::NoHandlers)
    ));
    assert!(matches!(
        refused(Handlers::new(store.clone()).on("account.Opened.Extra", flaky())),
        Some(HandlersStartError::InvalidPattern {
            handler: "flaky",
            ..
        })
    ));
    assert!(matches!(
        refused(
            Handlers::new(store.clone())
                .on("*", flaky())
                .on("*", flaky())
        ),
        Some(HandlersStartError::DuplicateName { .. })
    ));
    assert!(matches!(
        refused(Handlers::new(store.clone()).on("*", flaky()).workers(0)),
        Some(HandlersStartError::InvalidOptions {
            setting: "workers",
            ..
        })
    ));
    assert!(matches!(
        refused(
            Handlers::new(store.clone())
                .on("*", flaky())
                .lease(Duration::ZERO)
        ),
        Some(HandlersStartError::InvalidOptions {
            setting: "lease",
            ..
        })
    ));
}

#[test]
fn starting_outside_a_runtime_fails_with_a_typed_error() {
    let handlers = Handlers::new(InMemoryStore::new()).on(
        "*",
        Flaky {
            fixed: Arc::default(),
            attempts: Arc::default(),
        },
    );
    assert!(matches!(
        handlers.start().err(),
        Some(HandlersStartError::NoRuntime)
    ));
}
