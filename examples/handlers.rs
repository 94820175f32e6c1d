//! Side effects of the bank's events: durable handlers and the event bus.
//!
//! - A welcome email for each opened account. The mail service is flaky:
//!   it refuses the first two tries, so each request is retried after a
//!   backoff with jitter, and the third attempt delivers it.
//! - A webhook to a partner for each deposit. The partner's URL is wrong,
//!   so every attempt fails; after 3 failures the request is dead. The
//!   example lists the dead letter with its errors, "fixes" the URL and
//!   requeues it; it then succeeds.
//! - A bus subscriber that prints each balance as it changes: in-process,
//!   at most once across a crash, for what may be lost.
//!
//! Run it with `cargo run --example handlers`. The store is a fresh SQLite
//! file in the system's temporary directory, removed at the end.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use annals::prelude::*;
use annals::projections::bus::EventBus;
use annals::projections::handlers::{Attempt, EventHandler, HandlerOptions, Handlers};
use annals::projections::{async_trait, Envelope, HandlerError};
use annals::sqlite::SqliteStore;
use annals::{CommandContext, Repository, RequestFilter};
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------
// The bank
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
enum AccountEvent {
    Opened { owner: String },
    Deposited { amount: u64 },
}

#[derive(Debug, Clone)]
enum Command {
    Open { owner: String },
    Deposit { amount: u64 },
}

#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("the account is already open")]
    AlreadyOpen,
    #[error("the account is not open")]
    NotOpen,
}

#[derive(Debug, Default, Clone)]
struct Account {
    open: bool,
}

impl Aggregate for Account {
    const CATEGORY: &'static str = "account";
    type Event = AccountEvent;
    type Command = Command;
    type Error = Refusal;

    fn apply(&mut self, event: &AccountEvent) {
        if let AccountEvent::Opened { .. } = event {
            self.open = true;
        }
    }

    fn handle(&self, command: Command) -> Result<Vec<AccountEvent>, Refusal> {
        match command {
            Command::Open { .. } if self.open => Err(Refusal::AlreadyOpen),
            Command::Open { owner } => Ok(vec![AccountEvent::Opened { owner }]),
            Command::Deposit { .. } if !self.open => Err(Refusal::NotOpen),
            Command::Deposit { amount } => Ok(vec![AccountEvent::Deposited { amount }]),
        }
    }
}

// ---------------------------------------------------------------------------
// The welcome email: a flaky mail service, retried with backoff
// ---------------------------------------------------------------------------

/// A mail service that refuses the first two tries of each message.
#[derive(Default)]
struct FlakyMailer {
    tries: Mutex<HashMap<String, u32>>,
}

impl FlakyMailer {
    fn send(&self, to: &str) -> Result<(), String> {
        let mut tries = self.tries.lock().expect("no sender panics holding it");
        let n = tries.entry(to.to_owned()).or_default();
        *n += 1;
        if *n <= 2 {
            Err("421 service not available, try again later".to_owned())
        } else {
            Ok(())
        }
    }
}

struct WelcomeEmail {
    mailer: Arc<FlakyMailer>,
    started: Instant,
}

#[async_trait]
impl EventHandler for WelcomeEmail {
    type Events = AccountEvent;
    const NAME: &'static str = "welcome-email";

    fn options(&self) -> HandlerOptions {
        // Short pauses so that the example runs quickly: at most 200 ms
        // before the second attempt, 400 ms before the third.
        HandlerOptions::default().backoff(Duration::from_millis(200), Duration::from_secs(2))
    }

    async fn handle(
        &self,
        event: &Envelope<AccountEvent>,
        attempt: &Attempt,
    ) -> Result<(), HandlerError> {
        let AccountEvent::Opened { owner } = &event.event else {
            return Ok(());
        };
        let at = self.started.elapsed().as_millis();
        match self.mailer.send(owner) {
            Ok(()) => {
                println!(
                    "  [{at:>5} ms] welcome email to {owner}: attempt {}, sent",
                    attempt.number()
                );
                Ok(())
            }
            Err(error) => {
                println!(
                    "  [{at:>5} ms] welcome email to {owner}: attempt {}, failed: {error}",
                    attempt.number()
                );
                Err(error.into())
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The partner webhook: fails until its URL is fixed
// ---------------------------------------------------------------------------

struct PartnerWebhook {
    url_fixed: Arc<AtomicBool>,
    calls: Arc<AtomicU32>,
}

#[async_trait]
impl EventHandler for PartnerWebhook {
    type Events = AccountEvent;
    const NAME: &'static str = "partner-webhook";

    fn options(&self) -> HandlerOptions {
        HandlerOptions::default()
            .max_errors(3)
            .backoff(Duration::from_millis(50), Duration::from_secs(1))
    }

    async fn handle(
        &self,
        event: &Envelope<AccountEvent>,
        attempt: &Attempt,
    ) -> Result<(), HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if !self.url_fixed.load(Ordering::SeqCst) {
            return Err("POST https://partner.invalid/hook: no such host".into());
        }
        println!(
            "  webhook: deposit {} of {} delivered on attempt {}",
            event.event_id,
            event.stream_id,
            attempt.number()
        );
        Ok(())
    }
}

// ---------------------------------------------------------------------------

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("annals-handlers-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store = SqliteStore::open(dir.join("events.db")).await?;

    // The bus: balances printed as they change, in memory only.
    let balances = Arc::new(Mutex::new(HashMap::<String, u64>::new()));
    let bus = EventBus::new(store.clone());
    let seen = balances.clone();
    let _subscription = bus.subscribe("account.*", move |event| {
        let seen = seen.clone();
        async move {
            let account = event.stream_id.id().to_owned();
            let mut balances = seen.lock().expect("no subscriber panics holding it");
            let balance = balances.entry(account.clone()).or_default();
            if let AccountEvent::Deposited { amount } = event.decode::<AccountEvent>()? {
                *balance += amount;
            }
            println!("  bus: balance of {account} is {balance}");
            Ok(())
        }
    })?;
    let bus_running = bus.start().await?;

    // The durable handlers.
    let url_fixed = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU32::new(0));
    let handlers = Handlers::new(store.clone())
        .on(
            "account.Opened",
            WelcomeEmail {
                mailer: Arc::new(FlakyMailer::default()),
                started: Instant::now(),
            },
        )
        .on(
            "account.Deposited",
            PartnerWebhook {
                url_fixed: url_fixed.clone(),
                calls: calls.clone(),
            },
        )
        .error_reporter(|report| {
            println!(
                "  reporter: {} gave up on {} ({} at position {}) after attempt {}: {}",
                report.handler,
                report.request,
                report.event_type,
                report.position,
                report.attempt,
                report.error
            );
        })
        .poll_interval(Duration::from_millis(100))
        .start()?;

    println!("Opening an account for ada and depositing 100:");
    let accounts = Repository::<Account, _>::new(store.clone())?;
    let ctx = CommandContext::new();
    accounts
        .execute(
            "ada",
            Command::Open {
                owner: "ada".into(),
            },
            &ctx,
        )
        .await?;
    accounts
        .execute("ada", Command::Deposit { amount: 100 }, &ctx)
        .await?;

    handlers
        .wait_settled_within(Duration::from_secs(30))
        .await?;
    let counts = handlers.counts().await?;
    println!(
        "\nSettled: {} done, {} dead; {} executions succeeded, {} were retried, {} died.",
        counts.requests.done,
        counts.requests.dead,
        counts.executions.succeeded,
        counts.executions.retried,
        counts.executions.died
    );

    println!("\nDead letters:");
    let dead_letters = handlers.dead_letters();
    let dead = dead_letters.list(&RequestFilter::dead()).await?;
    for request in &dead {
        println!(
            "  {} {} for {} {} in {}, {} attempts:",
            request.id,
            request.handler,
            request.event_type,
            request.event_id,
            request.stream_id,
            request.attempts
        );
        for error in &request.errors {
            println!("    attempt {}: {}", error.attempt, error.error);
        }
    }

    println!("\nThe partner's URL is fixed; requeuing the dead letters:");
    url_fixed.store(true, Ordering::SeqCst);
    let requeued = dead_letters
        .requeue_all(&RequestFilter::dead().handler("partner-webhook"))
        .await?;
    println!("  requeued {requeued}");
    handlers
        .wait_settled_within(Duration::from_secs(30))
        .await?;
    let counts = handlers.counts().await?;
    println!(
        "\nSettled again: {} done, {} dead; the webhook was called {} times in all.",
        counts.requests.done,
        counts.requests.dead,
        calls.load(Ordering::SeqCst)
    );

    handlers.stop().await;
    bus_running.stop().await;
    store.close().await;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
