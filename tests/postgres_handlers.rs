//! Durable handlers with their requests in PostgreSQL, on two store
//! instances of one schema (as in two processes): executors that share
//! the work and never run one request twice, and the claim of an executor
//! that died in another process. The scenarios on one store run from
//! `projections/tests/handlers.rs`.

mod on_postgres;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use annals::postgres::PostgresStore;
use annals::projections::handlers::{Attempt, EventHandler, Handlers};
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

/// A handler that records the events it handled, and notices two runs of
/// one event at once.
#[derive(Clone, Default)]
struct Probe {
    runs: Arc<Mutex<Vec<EventId>>>,
    running: Arc<Mutex<HashSet<EventId>>>,
    overlaps: Arc<AtomicUsize>,
}

impl Probe {
    fn runs(&self) -> Vec<EventId> {
        self.runs.lock().expect("not poisoned").clone()
    }

    /// How many times each event was handled.
    fn successes(&self) -> HashMap<EventId, u32> {
        let mut successes = HashMap::new();
        for event in self.runs() {
            *successes.entry(event).or_default() += 1;
        }
        successes
    }
}

#[async_trait]
impl EventHandler for Probe {
    type Events = AccountEvent;
    const NAME: &'static str = "probe";

    async fn handle(
        &self,
        event: &Envelope<AccountEvent>,
        _: &Attempt,
    ) -> Result<(), HandlerError> {
        if !self
            .running
            .lock()
            .map_err(|_| "poisoned")?
            .insert(event.event_id)
        {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        // Long enough for other workers to start meanwhile.
        tokio::time::sleep(Duration::from_millis(2)).await;
        self.running
            .lock()
            .map_err(|_| "poisoned")?
            .remove(&event.event_id);
        self.runs
            .lock()
            .map_err(|_| "poisoned")?
            .push(event.event_id);
        Ok(())
    }
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
            let probe = Probe::default();
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

            let probe = Probe::default();
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
