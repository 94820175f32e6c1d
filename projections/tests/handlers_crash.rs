//! Kill -9 the process running durable handlers, over and over, while
//! another process appends: afterwards every (event, handler) pair has
//! exactly one request, and every request ends done or dead — none lost,
//! none made twice, none run after it was done.
//!
//! The child is this test binary run again with `ANNALS_HANDLERS_CHILD`
//! naming the store's file. It runs two handlers with the concurrent
//! scheduler (4 workers, a short lease so that the claims of a killed child
//! expire soon): `mail` for every opened account, `hook` for every event,
//! which fails for good on deposits of a multiple of 7 cents. Each handler
//! sleeps a little, so that kills land while requests run, while the
//! processor stores requests, and while outcomes are stored. A last child
//! runs until settled.

mod common;

use std::collections::{HashMap, HashSet};
use std::error::Error;
use std::path::Path;
use std::time::Duration;

use annals_core::testkit::bank::AccountEvent;
use annals_core::{
    AppendRequest, EventId, EventStore, ExpectedVersion, HandlerStore, Metadata, NewEvent,
    RequestFilter, RequestStatus, StreamId, Timestamp, CLAIM_EXPIRED,
};
use annals_projections::handlers::{permanent, Attempt, EventHandler, HandlerOptions, Handlers};
use annals_projections::{async_trait, Envelope, HandlerError};
use annals_sqlite::SqliteStore;
use common::{expect_line, kill_at_random_moment, say, seed, spawn_child, Dice, SEED};

const TEST: &str = "durable_handlers_make_one_request_per_pair_across_sigkill_restarts";
const CHILD: &str = "ANNALS_HANDLERS_CHILD";
const CHILD_BATCH: &str = "ANNALS_HANDLERS_BATCH";
const CHILD_FINISH: &str = "ANNALS_HANDLERS_FINISH";

const CYCLES: u64 = 20;
const ACCOUNTS: u64 = 40;
const DEPOSITS_PER_CYCLE: u64 = 30;

struct Mail;

#[async_trait]
impl EventHandler for Mail {
    type Events = AccountEvent;
    const NAME: &'static str = "mail";

    fn options(&self) -> HandlerOptions {
        HandlerOptions::default().backoff(Duration::from_millis(5), Duration::from_millis(20))
    }

    async fn handle(
        &self,
        event: &Envelope<AccountEvent>,
        _: &Attempt,
    ) -> Result<(), HandlerError> {
        pause(event.event_id).await;
        Ok(())
    }
}

struct Hook;

#[async_trait]
impl EventHandler for Hook {
    type Events = AccountEvent;
    const NAME: &'static str = "hook";

    fn options(&self) -> HandlerOptions {
        HandlerOptions::default()
            .max_errors(3)
            .backoff(Duration::from_millis(5), Duration::from_millis(20))
    }

    fn ordering_key(&self, event: &Envelope<AccountEvent>) -> Option<String> {
        Some(event.stream_id.to_string())
    }

    async fn handle(
        &self,
        event: &Envelope<AccountEvent>,
        _: &Attempt,
    ) -> Result<(), HandlerError> {
        pause(event.event_id).await;
        match &event.event {
            AccountEvent::Deposited { amount } if poisoned(*amount) => {
                Err(permanent(format!("deposit of {amount} refused")))
            }
            _ => Ok(()),
        }
    }
}

/// Deposits the hook refuses.
fn poisoned(amount: u64) -> bool {
    amount % 7 == 0
}

/// A few milliseconds of work, derived from the event so that it varies.
async fn pause(event: EventId) {
    let ms = event.as_uuid().as_u128() % 4;
    tokio::time::sleep(Duration::from_millis(u64::try_from(ms).unwrap_or(0))).await;
}

fn deposit(amount: u64) -> NewEvent {
    NewEvent::from_domain(&AccountEvent::Deposited { amount }, Metadata::default())
        .expect("a deposit encodes")
}

#[test]
fn durable_handlers_make_one_request_per_pair_across_sigkill_restarts() -> Result<(), Box<dyn Error>>
{
    if let Ok(path) = std::env::var(CHILD) {
        return child(Path::new(&path));
    }
    let seed = seed();
    println!("seed {seed} (set {SEED} to repeat)");
    let mut dice = Dice::new(seed);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("log.db");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let store = runtime.block_on(SqliteStore::open(&path))?;
    runtime.block_on(open_accounts(&store))?;
    for cycle in 0..CYCLES {
        let envs = vec![
            (CHILD, path.display().to_string()),
            (CHILD_BATCH, (1 + dice.roll(64)).to_string()),
        ];
        let (mut child, lines) = spawn_child(TEST, &envs)?;
        let appending = runtime.spawn(append_deposits(store.clone(), dice.roll(u64::MAX)));
        kill_at_random_moment(
            &mut child,
            &lines,
            &mut dice,
            150,
            &format!("cycle {cycle} (seed {seed})"),
        )?;
        runtime.block_on(appending)??;
        let counts = runtime.block_on(store.request_counts(Timestamp::now()))?;
        println!("cycle {cycle}: {counts:?}");
    }

    let envs = vec![
        (CHILD, path.display().to_string()),
        (CHILD_BATCH, "50".to_owned()),
        (CHILD_FINISH, "1".to_owned()),
    ];
    let (mut child, lines) = spawn_child(TEST, &envs)?;
    expect_line(&lines, "SETTLED", Duration::from_secs(60))
        .map_err(|e| format!("the last child: {e} (seed {seed})"))?;
    assert!(
        child.wait()?.success(),
        "the last child failed (seed {seed})"
    );

    let log = runtime.block_on(annals_core::testkit::read_log(&store))?;
    let requests =
        runtime.block_on(store.list_requests(&RequestFilter::all(), Timestamp::now()))?;
    let mut pairs: HashMap<(String, EventId), usize> = HashMap::new();
    for request in &requests {
        *pairs
            .entry((request.handler.clone(), request.event_id))
            .or_default() += 1;
    }
    let twice: Vec<_> = pairs.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "pairs with more than one request: {twice:?} (seed {seed})"
    );
    let mut expected = HashSet::new();
    let mut poison = HashSet::new();
    for event in &log {
        expected.insert(("hook".to_owned(), event.event_id));
        match event.decode::<AccountEvent>()? {
            AccountEvent::Opened { .. } => {
                expected.insert(("mail".to_owned(), event.event_id));
            }
            AccountEvent::Deposited { amount } if poisoned(amount) => {
                poison.insert(event.event_id);
            }
            _ => {}
        }
    }
    let made: HashSet<_> = pairs.keys().cloned().collect();
    assert_eq!(
        made.len(),
        expected.len(),
        "requests made for {} pairs, expected {} (seed {seed})",
        made.len(),
        expected.len()
    );
    assert_eq!(made, expected, "the pairs with requests (seed {seed})");
    let mut dead_by_claims = 0;
    for request in &requests {
        let poisoned = request.handler == "hook" && poison.contains(&request.event_id);
        match request.status {
            RequestStatus::Done => assert!(
                !poisoned,
                "a poisoned request is done: {request:?} (seed {seed})"
            ),
            RequestStatus::Dead if poisoned => {}
            RequestStatus::Dead => {
                // Killed while it ran, as often as its handler allows.
                assert!(
                    request.errors.iter().any(|e| e.error == CLAIM_EXPIRED),
                    "a request died of something else than lost claims: {request:?} (seed {seed})"
                );
                dead_by_claims += 1;
            }
            _ => panic!("a request did not settle: {request:?} (seed {seed})"),
        }
    }
    println!(
        "{} events, {} requests, {} poisoned, {dead_by_claims} dead of lost claims",
        log.len(),
        requests.len(),
        poison.len()
    );
    runtime.block_on(store.close());
    Ok(())
}

async fn open_accounts(store: &SqliteStore) -> Result<(), Box<dyn Error>> {
    for n in 0..ACCOUNTS {
        let opened = AccountEvent::Opened {
            owner: format!("owner-{n}"),
        };
        let request = AppendRequest::to_stream(
            StreamId::new(format!("account-{n}"))?,
            ExpectedVersion::NoStream,
            vec![NewEvent::from_domain(&opened, Metadata::default())?],
        );
        store.append(request).await?;
    }
    Ok(())
}

/// Appends a share of deposits, one append each, with short pauses so
/// that they spread over the child's life.
async fn append_deposits(store: SqliteStore, seed: u64) -> Result<(), String> {
    let mut dice = Dice::new(seed);
    for _ in 0..DEPOSITS_PER_CYCLE {
        let account =
            StreamId::new(format!("account-{}", dice.roll(ACCOUNTS))).map_err(|e| e.to_string())?;
        let request = AppendRequest::to_stream(
            account,
            ExpectedVersion::Any,
            vec![deposit(1 + dice.roll(100))],
        );
        store.append(request).await.map_err(|e| e.to_string())?;
        tokio::time::sleep(Duration::from_millis(dice.roll(5))).await;
    }
    Ok(())
}

/// The child: runs the handlers until killed, or, told to finish, until
/// settled, then says so and stops.
fn child(path: &Path) -> Result<(), Box<dyn Error>> {
    let batch: usize = std::env::var(CHILD_BATCH)?.parse()?;
    let finish = std::env::var(CHILD_FINISH).is_ok();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = SqliteStore::open(path).await?;
        let running = Handlers::new(store.clone())
            .on("account.Opened", Mail)
            .on("*", Hook)
            .workers(4)
            .batch_size(batch)
            .lease(Duration::from_millis(300))
            .poll_interval(Duration::from_millis(50))
            .start()?;
        say("READY");
        if !finish {
            // Until killed, or a minute (never outliving a dead parent).
            let failed = running.wait_settled_within(Duration::from_secs(60));
            tokio::select! {
                () = async {
                    loop {
                        if let Some(failure) = running.failure() {
                            say(&format!("FAILED {failure}"));
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                } => {}
                () = tokio::time::sleep(Duration::from_secs(60)) => {}
            }
            drop(failed);
            return Ok(());
        }
        match running.wait_settled_within(Duration::from_secs(60)).await {
            Ok(()) => say("SETTLED"),
            Err(e) => {
                say(&format!("FAILED {e}"));
                return Err(e.into());
            }
        }
        running.stop().await;
        store.close().await;
        Ok::<_, Box<dyn Error>>(())
    })
}
