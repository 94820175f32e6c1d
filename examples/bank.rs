//! A bank account, event-sourced.
//!
//! Opens accounts, moves money, refuses an overdraft, shows two tellers
//! racing on one account (a conflict, then a retry), and rebuilds an
//! account's state by replaying its stream.
//!
//! Run it with `cargo run --example bank`. The events are kept in a SQLite
//! file (the path is printed; pass another path as the first argument), so
//! running it again continues where the last run stopped.
//!
//! With `ANNALS_PG_URL` set (say `postgres://postgres@127.0.0.1/test`), the
//! same code runs on PostgreSQL instead, in the schema `annals_bank_example`:
//! the only difference is the constructor of the store.

use annals::postgres::PostgresStore;
use annals::prelude::*;
use annals::sqlite::SqliteStore;
use annals::{CommandContext, CommandError, ExpectedVersion, NewEvent, Repository, RetryPolicy};
use serde::{Deserialize, Serialize};

/// What can happen to an account. Each variant is stored as its own event
/// type ("Opened", "Deposited", "Withdrawn") with a JSON payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
enum AccountEvent {
    Opened { owner: String },
    Deposited { amount: u64 },
    Withdrawn { amount: u64 },
}

/// What a customer can ask for.
#[derive(Debug, Clone)]
enum Command {
    Open { owner: String },
    Deposit { amount: u64 },
    Withdraw { amount: u64 },
}

/// Why the bank says no.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("the account is already open")]
    AlreadyOpen,
    #[error("the account is not open")]
    NotOpen,
    #[error("not enough money: balance {balance}, asked for {asked}")]
    InsufficientFunds { balance: u64, asked: u64 },
}

/// The account's state: only what decisions need.
#[derive(Debug, Default, Clone)]
struct Account {
    owner: Option<String>,
    balance: u64,
}

impl Aggregate for Account {
    const CATEGORY: &'static str = "account";
    type Event = AccountEvent;
    type Command = Command;
    type Error = Refusal;

    // Applying an event never fails: it already happened.
    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened { owner } => self.owner = Some(owner.clone()),
            AccountEvent::Deposited { amount } => self.balance += amount,
            AccountEvent::Withdrawn { amount } => self.balance -= amount,
        }
    }

    // Handling a command decides; it never changes the state itself.
    fn handle(&self, command: Command) -> Result<Vec<AccountEvent>, Refusal> {
        match (command, &self.owner) {
            (Command::Open { .. }, Some(_)) => Err(Refusal::AlreadyOpen),
            (Command::Open { owner }, None) => Ok(vec![AccountEvent::Opened { owner }]),
            (_, None) => Err(Refusal::NotOpen),
            (Command::Deposit { amount }, Some(_)) => Ok(vec![AccountEvent::Deposited { amount }]),
            (Command::Withdraw { amount }, Some(_)) if amount > self.balance => {
                Err(Refusal::InsufficientFunds {
                    balance: self.balance,
                    asked: amount,
                })
            }
            (Command::Withdraw { amount }, Some(_)) => Ok(vec![AccountEvent::Withdrawn { amount }]),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    match std::env::var("ANNALS_PG_URL") {
        Ok(url) if !url.is_empty() => {
            let store = PostgresStore::options()
                .url(url)
                .schema("annals_bank_example")
                .connect()
                .await?;
            println!("Event store: PostgreSQL, schema {}", store.schema());
            run(store).await
        }
        _ => {
            let path = std::env::args()
                .nth(1)
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| std::env::temp_dir().join("annals-bank-example.db"));
            let store = SqliteStore::open(&path).await?;
            println!("Event store: {}", path.display());
            run(store).await
        }
    }
}

/// The bank, on whichever store `main` opened.
async fn run<S>(store: S) -> Result<(), Box<dyn std::error::Error>>
where
    S: EventStore + Clone + 'static,
{
    let head = store.head().await?;
    if head.0 == 0 {
        println!("The store is empty: this is the first run.\n");
    } else {
        println!("The store already holds {head} events from earlier runs.\n");
    }

    let accounts = Repository::<Account, _>::new(store.clone())?;
    let ctx = CommandContext::new().field("channel", "example");

    println!("1. Opening accounts");
    for (id, owner) in [("ada", "Ada Lovelace"), ("alan", "Alan Turing")] {
        let open = Command::Open {
            owner: owner.into(),
        };
        match accounts.execute(id, open, &ctx).await {
            Ok(done) => println!(
                "   account-{id} opened for {owner} (version {})",
                done.version
            ),
            Err(CommandError::Refused {
                error: Refusal::AlreadyOpen,
                ..
            }) => {
                println!("   account-{id} was opened on an earlier run")
            }
            Err(e) => return Err(e.into()),
        }
    }

    println!("\n2. Moving money");
    let done = accounts
        .execute("ada", Command::Deposit { amount: 100 }, &ctx)
        .await?;
    println!(
        "   ada deposits 100 -> balance {} (stream version {}, log position {})",
        done.state.balance, done.version, done.events[0].position
    );
    let done = accounts
        .execute("ada", Command::Withdraw { amount: 30 }, &ctx)
        .await?;
    println!("   ada withdraws 30 -> balance {}", done.state.balance);

    println!("\n3. A rule of the domain: no overdraft");
    let balance = accounts.load("alan").await?.state.balance;
    match accounts
        .execute(
            "alan",
            Command::Withdraw {
                amount: balance + 50,
            },
            &ctx,
        )
        .await
    {
        Err(CommandError::Refused { error, .. }) => {
            println!("   alan withdraws {}: refused: {error}", balance + 50)
        }
        other => println!("   unexpected: {other:?}"),
    }

    println!("\n4. Two tellers, one account");
    // Teller A loads the account and decides on a withdrawal...
    let teller_a = accounts.load("ada").await?;
    let decided = teller_a.state.handle(Command::Withdraw { amount: 20 })?;
    println!(
        "   teller A reads ada at version {} (balance {}) and decides to pay out 20",
        teller_a.version, teller_a.state.balance
    );
    // ...while teller B's deposit lands first.
    let b = accounts
        .execute("ada", Command::Deposit { amount: 5 }, &ctx)
        .await?;
    println!(
        "   teller B deposits 5 first: ada is now at version {}",
        b.version
    );
    // Teller A's append names the version it decided on, so the store refuses it.
    let events = decided
        .iter()
        .map(|e| NewEvent::from_domain(e, ctx.metadata().clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let stream = accounts.stream_id("ada")?;
    match store
        .append_to_stream(&stream, ExpectedVersion::Exact(teller_a.version), events)
        .await
    {
        Err(conflict @ annals::AppendError::Conflict { .. }) => {
            println!("   teller A's append is refused: {conflict}")
        }
        other => println!("   unexpected: {other:?}"),
    }
    // With a retry policy the repository reloads and decides again.
    let patient = accounts.clone().with_retry(RetryPolicy::on_conflict(3));
    let done = patient
        .execute("ada", Command::Withdraw { amount: 20 }, &ctx)
        .await?;
    println!(
        "   teller A retries on fresh state: paid out, balance {} at version {}",
        done.state.balance, done.version
    );

    println!("\n5. Replaying ada's stream to rebuild her account");
    let mut rebuilt = Account::default();
    for recorded in store.read_stream_to_end(&stream).await? {
        let event: AccountEvent = recorded.decode()?;
        rebuilt.apply(&event);
        println!(
            "   v{:<3} {:<10} {:<28} -> balance {}",
            recorded.version,
            recorded.event_type.as_str(),
            recorded.payload.as_str(),
            rebuilt.balance
        );
    }
    let loaded = accounts.load("ada").await?;
    println!(
        "   rebuilt balance {} equals the repository's {}: {}",
        rebuilt.balance,
        loaded.state.balance,
        rebuilt.balance == loaded.state.balance
    );

    println!(
        "\nThe log now holds {} events. Run the example again: everything above is still there.",
        store.head().await?
    );
    Ok(())
}
