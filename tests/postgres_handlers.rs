//! Durable handlers with their requests in PostgreSQL: retries on a manual
//! clock until dead, requeued with their history, permanent failures and
//! panics, per-key order under a worker pool, executors on two store
//! instances of one schema (as in two processes) that share the work and
//! never run one request twice, and the claim of an executor that died.

mod on_postgres;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use annals::postgres::PostgresStore;
use annals::projections::handlers::{permanent, Attempt, EventHandler, HandlerOptions, Handlers};
use annals::projections::saga::ManualClock;
use annals::projections::{async_trait, Envelope, HandlerError};
use annals::{
    EventId, EventStore, HandlerStore, Position, ReadAll, RequestFilter, RequestStatus, Timestamp,
};
use annals_core::testkit::bank::AccountEvent;
use annals_core::{Claim, NewRequest, CLAIM_EXPIRED};
use on_postgres::{on_postgres, record, TestResult};

/// A bound for a few hundred requests on a local server.
const PATIENCE: Duration = Duration::from_secs(20);

/// The time a manual clock starts at.
fn epoch() -> Timestamp {
    Timestamp::from_unix_micros(1_700_000_000_000_000)
}

/// Opens `accounts` accounts and deposits `1..=deposits` into each, one
/// append per account.
async fn bank(
    store: &PostgresStore,
    accounts: usize,
    deposits: u64,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    for a in 0..accounts {
        let mut events = vec![AccountEvent::Opened {
            owner: format!("owner {a}"),
        }];
        events.extend((1..=deposits).map(|amount| AccountEvent::Deposited { amount }));
        record(store, &a.to_string(), &events).await?;
    }
    Ok(())
}

/// The requests of the store, in id order.
async fn requests(
    store: &PostgresStore,
) -> Result<Vec<annals::HandlerRequest>, Box<dyn std::error::Error + Send + Sync>> {
    Ok(store
        .list_requests(&RequestFilter::all(), Timestamp::now())
        .await?)
}

/// How an attempt ends.
type Outcome = Result<(), HandlerError>;

/// Decides an attempt's outcome: success, a failure, a permanent one, or
/// a panic.
type Verdict = Arc<dyn Fn(&Envelope<AccountEvent>) -> Outcome + Send + Sync>;

/// One attempt as the handler saw it.
#[derive(Debug, Clone)]
struct Run {
    event: EventId,
    stream: String,
    version: u64,
    number: u32,
    succeeded: bool,
}

/// A handler that records its attempts and how many ran at once, and
/// ends each as its verdict says.
#[derive(Clone)]
struct Probe {
    options: HandlerOptions,
    /// Whether the events of one stream run in order.
    keyed: bool,
    verdict: Verdict,
    runs: Arc<Mutex<Vec<Run>>>,
    running: Arc<Mutex<HashSet<EventId>>>,
    overlaps: Arc<AtomicUsize>,
    most_at_once: Arc<AtomicUsize>,
}

impl Probe {
    fn new(verdict: impl Fn(&Envelope<AccountEvent>) -> Outcome + Send + Sync + 'static) -> Self {
        Probe {
            options: HandlerOptions::default(),
            keyed: false,
            verdict: Arc::new(verdict),
            runs: Arc::default(),
            running: Arc::default(),
            overlaps: Arc::default(),
            most_at_once: Arc::default(),
        }
    }

    fn succeeding() -> Self {
        Probe::new(|_| Ok(()))
    }

    fn runs(&self) -> Vec<Run> {
        self.runs.lock().expect("not poisoned").clone()
    }

    /// How many times each event's handling succeeded.
    fn successes(&self) -> HashMap<EventId, u32> {
        let mut successes = HashMap::new();
        for run in self.runs().iter().filter(|r| r.succeeded) {
            *successes.entry(run.event).or_default() += 1;
        }
        successes
    }
}

#[async_trait]
impl EventHandler for Probe {
    type Events = AccountEvent;
    const NAME: &'static str = "probe";

    fn options(&self) -> HandlerOptions {
        self.options
    }

    fn ordering_key(&self, event: &Envelope<AccountEvent>) -> Option<String> {
        self.keyed.then(|| event.stream_id.to_string())
    }

    async fn handle(
        &self,
        event: &Envelope<AccountEvent>,
        attempt: &Attempt,
    ) -> Result<(), HandlerError> {
        {
            let mut running = self.running.lock().map_err(|_| "poisoned")?;
            if !running.insert(event.event_id) {
                self.overlaps.fetch_add(1, Ordering::SeqCst);
            }
            self.most_at_once.fetch_max(running.len(), Ordering::SeqCst);
        }
        // Long enough for other workers to start meanwhile.
        tokio::time::sleep(Duration::from_millis(2)).await;
        self.running
            .lock()
            .map_err(|_| "poisoned")?
            .remove(&event.event_id);
        let outcome = (self.verdict)(event);
        self.runs.lock().map_err(|_| "poisoned")?.push(Run {
            event: event.event_id,
            stream: event.stream_id.to_string(),
            version: event.version,
            number: attempt.number(),
            succeeded: outcome.is_ok(),
        });
        outcome
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_on_a_manual_clock_until_dead_and_a_requeue_runs_again_keeping_the_history(
) -> TestResult {
    on_postgres(
        "retries_on_a_manual_clock_until_dead_and_a_requeue_runs_again_keeping_the_history",
        |pg| async move {
            let store = pg.store().await?;
            let clock = ManualClock::starting_at(epoch());
            let fixed = Arc::new(AtomicBool::new(false));
            let service = fixed.clone();
            let mut flaky = Probe::new(move |_| {
                if service.load(Ordering::SeqCst) {
                    Ok(())
                } else {
                    Err("the service is down".into())
                }
            });
            flaky.options = HandlerOptions::default()
                .max_errors(3)
                .backoff(Duration::from_secs(1), Duration::from_secs(10));
            let mut handlers = Handlers::new(store.clone())
                .on("account.Opened", flaky.clone())
                .clock(clock.clone())
                .jitter_seed(7)
                .cooperative()?;
            let opened = AccountEvent::Opened {
                owner: "ada".into(),
            };
            record(
                &store,
                "ada",
                &[opened, AccountEvent::Deposited { amount: 5 }],
            )
            .await?;
            let letters = handlers.dead_letters();
            let only = || async {
                let all = letters.list(&RequestFilter::all()).await?;
                assert_eq!(
                    all.len(),
                    1,
                    "one request, for the one event the pattern selects"
                );
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(all[0].clone())
            };

            let first = handlers.run_until_idle().await?;
            assert_eq!((first.events, first.requests, first.executed), (2, 1, 1));
            // Each failure is due again within the backoff's ceiling for
            // its count (1 s, then 2 s), and runs once the clock gets there.
            for (failures, ceiling) in [(1, 1), (2, 2)] {
                let failed = only().await?;
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
                if wait > 0 {
                    assert_eq!(handlers.run_until_idle().await?.executed, 0, "ran early");
                }
                clock.advance(Duration::from_secs(u64::try_from(ceiling)?));
                assert_eq!(handlers.run_until_idle().await?.executed, 1);
            }
            let dead = only().await?;
            assert_eq!(
                (dead.status, dead.failures, dead.errors.len()),
                (RequestStatus::Dead, 3, 3)
            );
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
            let listed = letters
                .list(&RequestFilter::dead().handler("probe"))
                .await?;
            assert_eq!(listed.iter().map(|r| r.id).collect::<Vec<_>>(), [dead.id]);

            fixed.store(true, Ordering::SeqCst);
            assert!(letters.requeue(dead.id).await?);
            assert_eq!(handlers.run_until_idle().await?.executed, 1);
            let done = only().await?;
            assert_eq!(
                (done.status, done.errors.len()),
                (RequestStatus::Done, 3),
                "history kept"
            );
            let numbers: Vec<u32> = flaky.runs().iter().map(|r| r.number).collect();
            assert_eq!(numbers, [1, 2, 3, 4]);
            assert!(
                !letters.requeue(dead.id).await?,
                "a done request is not requeued"
            );
            Ok(())
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_dies_at_once_and_a_panic_is_a_failure_to_retry() -> TestResult {
    on_postgres(
        "a_permanent_failure_dies_at_once_and_a_panic_is_a_failure_to_retry",
        |pg| async move {
            let store = pg.store().await?;
            let broken = Probe::new(|event| match event.event {
                AccountEvent::Opened { .. } => panic!("the template is missing"),
                _ => Err(permanent("the partner deleted this account")),
            });
            let mut handlers = Handlers::new(store.clone())
                .on("*", broken)
                .clock(ManualClock::starting_at(epoch()))
                .cooperative()?;
            let opened = AccountEvent::Opened {
                owner: "ada".into(),
            };
            record(
                &store,
                "ada",
                &[opened, AccountEvent::Deposited { amount: 5 }],
            )
            .await?;
            assert_eq!(handlers.run_until_idle().await?.executed, 2);
            let all = requests(&store).await?;
            let by_type: HashMap<&str, _> =
                all.iter().map(|r| (r.event_type.as_str(), r)).collect();
            let panicked = by_type["Opened"];
            assert_eq!(
                (panicked.status, panicked.failures),
                (RequestStatus::Pending, 1)
            );
            assert!(
                panicked.errors[0]
                    .error
                    .contains("panicked: the template is missing"),
                "{}",
                panicked.errors[0].error
            );
            let refused = by_type["Deposited"];
            assert_eq!((refused.status, refused.failures), (RequestStatus::Dead, 1));
            assert_eq!(refused.errors[0].error, "the partner deleted this account");
            let counts = handlers.counts().await?;
            assert_eq!((counts.executions.panicked, counts.executions.died), (1, 1));

            let letters = handlers.dead_letters();
            let dead = RequestFilter::dead()
                .handler("probe")
                .event_type("Deposited");
            let listed = letters.list(&dead).await?;
            assert_eq!(listed.len(), 1);
            assert!(
                letters
                    .discard(listed[0].id, "account closed on purpose")
                    .await?
            );
            let discarded = letters.list(&RequestFilter::all().id(listed[0].id)).await?;
            assert_eq!(
                (discarded[0].status, discarded[0].discard_reason.as_deref()),
                (RequestStatus::Discarded, Some("account closed on purpose"))
            );
            Ok(())
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_order_holds_under_a_worker_pool_and_a_poison_event_blocks_only_its_key(
) -> TestResult {
    on_postgres(
        "per_key_order_holds_under_a_worker_pool_and_a_poison_event_blocks_only_its_key",
        |pg| async move {
            let store = pg.store().await?;
            bank(&store, 8, 6).await?;
            let poisoned = |stream: &str, version: u64| stream == "account-0" && version == 2;
            let mut ordered = Probe::new(move |event| {
                if poisoned(event.stream_id.as_str(), event.version) {
                    Err("poison".into())
                } else {
                    Ok(())
                }
            });
            ordered.keyed = true;
            ordered.options = HandlerOptions::default()
                .max_errors(1_000_000)
                .backoff(Duration::from_millis(1), Duration::from_millis(2));
            let running = Handlers::new(store.clone())
                .on("*", ordered.clone())
                .workers(4)
                .poll_interval(Duration::from_millis(20))
                .start()?;
            // Every key but the poisoned one finishes (7 × 7 events, and
            // the poisoned key's first), and the poison fails a few times,
            // each time with the rest of its key waiting behind it.
            let deadline = tokio::time::Instant::now() + PATIENCE;
            loop {
                let done = running.counts().await?.requests.done;
                let poison_failed = ordered
                    .runs()
                    .iter()
                    .filter(|r| poisoned(&r.stream, r.version))
                    .count();
                if done == 7 * 7 + 1 && poison_failed >= 5 {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the other keys did not finish"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            running.stop().await;
            let mut by_stream: HashMap<String, Vec<u64>> = HashMap::new();
            for run in ordered.runs().into_iter().filter(|r| r.succeeded) {
                by_stream.entry(run.stream).or_default().push(run.version);
            }
            assert_eq!(by_stream.len(), 8);
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
                ordered.most_at_once.load(Ordering::SeqCst) > 1,
                "keys never ran in parallel under 4 workers"
            );
            let all = requests(&store).await?;
            let waiting: Vec<_> = all
                .iter()
                .filter(|r| r.status != RequestStatus::Done)
                .collect();
            assert_eq!(waiting.len(), 6, "the poison and the five behind it");
            assert!(waiting.iter().all(|r| r.stream_id.as_str() == "account-0"));
            Ok(())
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executors_on_two_store_instances_share_the_requests_and_never_run_one_twice() -> TestResult
{
    on_postgres(
        "executors_on_two_store_instances_share_the_requests_and_never_run_one_twice",
        |pg| async move {
            let first = pg.store().await?;
            let second = pg.same_schema(&first).await?;
            bank(&first, 20, 9).await?;
            let probe = Probe::succeeding();
            let a = Handlers::new(first.clone())
                .on("*", probe.clone())
                .workers(4)
                .start()?;
            let b = Handlers::new(second.clone())
                .on("*", probe.clone())
                .workers(4)
                .start()?;
            a.wait_settled_within(PATIENCE).await?;
            b.wait_settled_within(PATIENCE).await?;
            let (ca, cb) = (a.counts().await?, b.counts().await?);
            a.stop().await;
            b.stop().await;
            assert_eq!(
                probe.overlaps.load(Ordering::SeqCst),
                0,
                "a request ran in both at once"
            );
            let successes = probe.successes();
            assert_eq!(successes.len(), 200, "every event ran");
            assert!(successes.values().all(|n| *n == 1), "a request ran twice");
            assert_eq!(probe.runs().len(), 200, "and nothing ran again");
            let all = requests(&first).await?;
            assert_eq!(
                all.len(),
                200,
                "one request per event, though both processors read the log"
            );
            assert!(all
                .iter()
                .all(|r| (r.status, r.attempts) == (RequestStatus::Done, 1)));
            assert_eq!(ca.executions.succeeded + cb.executions.succeeded, 200);
            assert!(
                ca.executions.succeeded > 0 && cb.executions.succeeded > 0,
                "both executors took part: {} and {}",
                ca.executions.succeeded,
                cb.executions.succeeded
            );
            Ok(())
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_executors_claim_expires_and_the_request_runs_again_after_a_claim_expired_error(
) -> TestResult {
    on_postgres(
        "a_dead_executors_claim_expires_and_the_request_runs_again_after_a_claim_expired_error",
        |pg| async move {
            let store = pg.store().await?;
            let dead_process = pg.same_schema(&store).await?;
            let clock = ManualClock::starting_at(epoch());
            record(
                &store,
                "ada",
                &[AccountEvent::Opened {
                    owner: "ada".into(),
                }],
            )
            .await?;
            let opened = store
                .read_all(ReadAll::after(Position::START))
                .await?
                .events[0]
                .clone();
            // Another process made the request, claimed it for 30 s, and died.
            let request = NewRequest {
                handler: "probe".into(),
                event_id: opened.event_id,
                position: opened.position,
                event_type: opened.event_type.clone(),
                stream_id: opened.stream_id.clone(),
                priority: 50,
                ordering_key: None,
            };
            dead_process
                .enqueue_requests(&[], &[request], epoch())
                .await?;
            let claim = Claim {
                owner: "killed".into(),
                handlers: vec!["probe".into()],
                now: epoch(),
                lease: Duration::from_secs(30),
                limit: 1,
            };
            assert_eq!(dead_process.claim_requests(&claim).await?.len(), 1);
            dead_process.close().await;

            let probe = Probe::succeeding();
            let mut handlers = Handlers::new(store.clone())
                .on("*", probe.clone())
                .clock(clock.clone())
                .cooperative()?;
            let held = handlers.run_until_idle().await?;
            assert_eq!(
                (held.events, held.executed),
                (1, 0),
                "run while the claim held"
            );
            clock.advance(Duration::from_secs(29));
            assert_eq!(handlers.run_until_idle().await?.executed, 0);
            clock.advance(Duration::from_secs(2));
            assert_eq!(handlers.run_until_idle().await?.executed, 1);
            let all = requests(&store).await?;
            assert_eq!(all.len(), 1, "a second request for the pair");
            assert_eq!((all[0].status, all[0].attempts), (RequestStatus::Done, 2));
            assert_eq!(all[0].errors[0].error, CLAIM_EXPIRED);
            assert_eq!(probe.runs().len(), 1);
            Ok(())
        },
    )
    .await
}
