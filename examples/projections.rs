//! Read models kept live beside the bank: an SQLite table of balances,
//! updated exactly once, and a "top accounts" view in memory.
//!
//! Runs commands while the projections follow the log, reads its own
//! writes, prints each projection's status, then deploys a new version of
//! the balances model: the runner rebuilds it from the log in a shadow
//! database, with a progress line, while the old one keeps serving, and
//! swaps it in. The model is the same before and after.
//!
//! Run it with `cargo run --example projections`. The events are kept in a
//! file (the paths are printed; pass another directory as the first
//! argument), so a second run adds to the first run's log. The read model is
//! derived data: each run deletes it and builds it afresh from the log.

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use annals::prelude::*;
use annals::projections::{
    async_trait, Envelope, HandlerError, Projection, ProjectionStatus, Projections, Running,
    SqliteProjection,
};
use annals::sqlite::rusqlite::{params, Connection, Transaction};
use annals::sqlite::SqliteStore;
use annals::{CommandContext, Repository, RetryPolicy};
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------
// The bank: one aggregate, as in the bank example
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
enum AccountEvent {
    Opened { owner: String },
    Deposited { amount: u64 },
    Withdrawn { amount: u64 },
}

#[derive(Debug, Clone)]
enum Command {
    Open { owner: String },
    Deposit { amount: u64 },
    Withdraw { amount: u64 },
}

#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("the account is already open")]
    AlreadyOpen,
    #[error("the account is not open")]
    NotOpen,
    #[error("not enough money: balance {balance}, asked for {asked}")]
    InsufficientFunds { balance: u64, asked: u64 },
}

#[derive(Debug, Default, Clone)]
struct Account {
    open: bool,
    balance: u64,
}

impl Aggregate for Account {
    const CATEGORY: &'static str = "account";
    type Event = AccountEvent;
    type Command = Command;
    type Error = Refusal;

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened { .. } => self.open = true,
            AccountEvent::Deposited { amount } => self.balance += amount,
            AccountEvent::Withdrawn { amount } => self.balance -= amount,
        }
    }

    fn handle(&self, command: Command) -> Result<Vec<AccountEvent>, Refusal> {
        match command {
            Command::Open { .. } if self.open => Err(Refusal::AlreadyOpen),
            Command::Open { owner } => Ok(vec![AccountEvent::Opened { owner }]),
            _ if !self.open => Err(Refusal::NotOpen),
            Command::Deposit { amount } => Ok(vec![AccountEvent::Deposited { amount }]),
            Command::Withdraw { amount } if amount > self.balance => {
                Err(Refusal::InsufficientFunds {
                    balance: self.balance,
                    asked: amount,
                })
            }
            Command::Withdraw { amount } => Ok(vec![AccountEvent::Withdrawn { amount }]),
        }
    }
}

// ---------------------------------------------------------------------------
// Read model 1: balances in SQLite, exactly once
// ---------------------------------------------------------------------------

/// One row per account. `V` is the model's version: version 2 also counts
/// each account's events, which needs a new column, so deploying it makes
/// the runner rebuild the table from the log.
struct Balances<const V: u32>;

impl<const V: u32> SqliteProjection for Balances<V> {
    type Events = AccountEvent;
    const NAME: &'static str = "balances";
    const VERSION: u32 = V;

    fn create(&self, db: &Transaction<'_>) -> Result<(), HandlerError> {
        db.execute_batch(
            "CREATE TABLE balances (
                 account TEXT PRIMARY KEY,
                 owner TEXT NOT NULL DEFAULT '',
                 cents INTEGER NOT NULL DEFAULT 0,
                 events INTEGER NOT NULL DEFAULT 0
             )",
        )?;
        Ok(())
    }

    fn handle(
        &mut self,
        db: &Transaction<'_>,
        event: &Envelope<AccountEvent>,
    ) -> Result<(), HandlerError> {
        let account = event.stream_id.id();
        let (owner, change) = match &event.event {
            AccountEvent::Opened { owner } => (owner.as_str(), 0),
            AccountEvent::Deposited { amount } => ("", i64::try_from(*amount)?),
            AccountEvent::Withdrawn { amount } => ("", -i64::try_from(*amount)?),
        };
        // Version 1 never counted events; version 2 does.
        let counted = i64::from(V >= 2);
        db.execute(
            "INSERT INTO balances (account, owner, cents, events) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (account) DO UPDATE SET
                 owner = CASE WHEN ?2 = '' THEN owner ELSE ?2 END,
                 cents = cents + ?3,
                 events = events + ?4",
            params![account, owner, change, counted],
        )?;
        Ok(())
    }
}

/// What a page of the application would show: balances from the model.
fn balances(
    model: &Connection,
) -> annals::sqlite::rusqlite::Result<BTreeMap<String, (String, i64)>> {
    let mut query = model.prepare("SELECT account, owner, cents FROM balances ORDER BY account")?;
    let rows = query.query_map([], |row| Ok((row.get(0)?, (row.get(1)?, row.get(2)?))))?;
    rows.collect()
}

// ---------------------------------------------------------------------------
// Read model 2: the top accounts, in memory, at least once
// ---------------------------------------------------------------------------

/// Balances kept in this process's memory; the application reads them
/// through the shared map.
#[derive(Clone, Default)]
struct TopAccounts(Arc<RwLock<HashMap<String, i64>>>);

impl TopAccounts {
    fn top(&self, n: usize) -> Vec<(String, i64)> {
        let balances = self
            .0
            .read()
            .expect("no reader panics while holding the lock");
        let mut all: Vec<_> = balances.iter().map(|(a, c)| (a.clone(), *c)).collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }
}

#[async_trait]
impl Projection for TopAccounts {
    type Events = AccountEvent;
    const NAME: &'static str = "top-accounts";
    // It lives in memory: it replays the log each time the program starts.
    const IN_MEMORY: bool = true;

    async fn handle(&mut self, event: &Envelope<AccountEvent>) -> Result<(), HandlerError> {
        let change = match event.event {
            AccountEvent::Opened { .. } => 0,
            AccountEvent::Deposited { amount } => i64::try_from(amount)?,
            AccountEvent::Withdrawn { amount } => -i64::try_from(amount)?,
        };
        let mut balances = self.0.write().map_err(|_| "the view's lock is poisoned")?;
        *balances.entry(event.stream_id.id().to_owned()).or_default() += change;
        Ok(())
    }

    async fn reset(&mut self) -> Result<(), HandlerError> {
        self.0
            .write()
            .map_err(|_| "the view's lock is poisoned")?
            .clear();
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The program
// ---------------------------------------------------------------------------

fn print_status(running: &Running) {
    println!(
        "   {:<13} {:>3} {:>10} {:>6} {:>5} {:>9}  state",
        "projection", "v", "checkpoint", "head", "lag", "events/s"
    );
    for ProjectionStatus {
        name,
        version,
        checkpoint,
        head,
        lag,
        state,
        events_per_second,
        ..
    } in running.status()
    {
        println!(
            "   {name:<13} {version:>3} {:>10} {:>6} {lag:>5} {events_per_second:>9.0}  {state}",
            checkpoint.to_string(),
            head.to_string()
        );
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("annals-projections-example"));
    std::fs::create_dir_all(&dir)?;
    let (events, model) = (dir.join("events.db"), dir.join("balances.db"));
    let store = SqliteStore::open(&events).await?;
    println!(
        "Event store: {}\nRead model:  {}\n",
        events.display(),
        model.display()
    );
    for file in ["balances.db", "balances.db-wal", "balances.db-shm"] {
        match std::fs::remove_file(dir.join(file)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    }

    let top = TopAccounts::default();
    let running = Projections::new(store.clone())
        .sqlite(&model, Balances::<1>)
        .projection(top.clone())
        .start()?;
    println!("1. Two projections catch up with the log ({} events), then follow it: `balances` (SQLite, exactly once) and `top-accounts` (memory, at least once)", store.head().await?);
    running.wait_idle().await?;
    print_status(&running);

    let accounts =
        Repository::<Account, _>::new(store.clone())?.with_retry(RetryPolicy::on_conflict(50));
    let ctx = CommandContext::new();
    let run = store.head().await?.0;
    let names = ["ada", "grace", "edsger", "barbara", "donald", "frances"];
    let id = |n: usize| format!("{}-{run}", names[n]);

    println!(
        "\n2. Opening {} accounts; after each command, the model already shows it",
        names.len()
    );
    let view = Connection::open(&model)?;
    for (n, owner) in names.iter().enumerate() {
        let done = accounts
            .execute(
                &id(n),
                Command::Open {
                    owner: (*owner).into(),
                },
                &ctx,
            )
            .await?;
        // Read your own writes: wait until the model has handled the event.
        running.wait_for("balances", done.position()).await?;
        let owner: String = view.query_row(
            "SELECT owner FROM balances WHERE account = ?1",
            [id(n)],
            |row| row.get(0),
        )?;
        println!(
            "   account {} opened at position {}: the model says its owner is {owner}",
            id(n),
            done.position()
        );
    }

    println!(
        "\n3. 8 tellers run 1,600 deposits and withdrawals at once; the projections keep up live"
    );
    let mut tellers = Vec::new();
    for teller in 0..8_u64 {
        let (accounts, ctx) = (accounts.clone(), ctx.clone());
        let ids: Vec<String> = (0..names.len()).map(id).collect();
        tellers.push(tokio::spawn(async move {
            for k in 0..200_u64 {
                let account = &ids[usize::try_from((teller + k) % 6).unwrap_or(0)];
                let command = if k % 5 == 4 {
                    Command::Withdraw { amount: 3 }
                } else {
                    Command::Deposit {
                        amount: 10 + teller * 7 + k % 13,
                    }
                };
                // A refused withdrawal is an answer, not a failure.
                if let Err(error) = accounts.execute(account, command, &ctx).await {
                    if error.refusal().is_none() {
                        return Err(error);
                    }
                }
            }
            Ok(())
        }));
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    println!("   while the tellers work:");
    print_status(&running);
    for teller in tellers {
        teller.await??;
    }
    running.wait_idle().await?;
    println!("   once every command is in:");
    print_status(&running);

    println!("\n4. The top 3 accounts, from the in-memory view");
    for (account, cents) in top.top(3) {
        println!("   {account:<16} {cents:>7} cents");
    }

    println!(
        "\n5. Deploying version 2 of `balances`: it is rebuilt from the log in a shadow database"
    );
    let before = balances(&view)?;
    running.stop().await;
    let running = Projections::new(store.clone())
        .batch_size(500)
        .on_rebuild_progress(|progress| {
            // One line that updates in a terminal; a line per batch in a log.
            if std::io::stdout().is_terminal() {
                print!("\r   rebuilding: {progress}   ");
                let _ = std::io::stdout().flush();
            } else {
                println!("   rebuilding: {progress}");
            }
        })
        .sqlite(&model, Balances::<2>)
        .projection(top.clone())
        .start()?;
    // Waits for the rebuild: until then the old table keeps serving.
    running.wait_idle().await?;
    if std::io::stdout().is_terminal() {
        println!();
    }
    let after = balances(&view)?;
    let counted: i64 = view.query_row("SELECT SUM(events) FROM balances", [], |row| row.get(0))?;
    println!(
        "   swapped in: {} accounts, the same balances as before ({}), and a new column counting {counted} events",
        after.len(),
        if before == after { "identical" } else { "DIFFERENT" }
    );
    print_status(&running);
    running.stop().await;

    println!(
        "\nThe log holds {} events. Run the example again: both models catch up with all of them.",
        store.head().await?
    );
    Ok(())
}
