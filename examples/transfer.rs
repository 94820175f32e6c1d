//! Money transfers between accounts, driven by a saga.
//!
//! A transfer is requested; the saga debits the source account, then
//! credits the target. Three transfers show the three endings:
//!
//! - the happy path: debited, credited, completed;
//! - the target account is closed: the credit is refused, so the saga
//!   refunds the debit (compensation);
//! - a large transfer needs an approval that never comes: after five
//!   minutes the saga's deadline fires and it refunds the debit.
//!
//! Each reaction of the saga is one atomic append: the commands it decided,
//! its own state, and its position in the log, together. The example ends
//! with every event one transfer caused, found by its correlation id.
//!
//! Run it with `cargo run --example transfer`. It uses a fresh SQLite file
//! each time (the path is printed) and a clock the example moves by hand,
//! so the five minutes pass at once.

use std::time::Duration;

use annals::prelude::*;
use annals::projections::saga::{Input, ManualClock, Reaction, Saga, SagaState};
use annals::projections::{async_trait, Envelope, HandlerError, Projections, Running};
use annals::sqlite::SqliteStore;
use annals::{CommandContext, EventSet, Position, ReadAll, Repository, RetryPolicy};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

// ---------------------------------------------------------------------------
// Accounts
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
enum AccountEvent {
    AccountOpened { owner: String, deposit: u64 },
    AccountClosed,
    Debited { amount: u64, transfer: String },
    Credited { amount: u64, transfer: String },
    Refunded { amount: u64, transfer: String },
}

#[derive(Debug, Clone)]
enum AccountCommand {
    Open { owner: String, deposit: u64 },
    Close,
    Debit { amount: u64, transfer: String },
    Credit { amount: u64, transfer: String },
    Refund { amount: u64, transfer: String },
}

#[derive(Debug, thiserror::Error)]
enum AccountRefusal {
    #[error("the account is closed")]
    Closed,
    #[error("the account was never opened")]
    NotOpen,
    #[error("not enough money: balance {balance}, asked for {asked}")]
    InsufficientFunds { balance: u64, asked: u64 },
}

#[derive(Debug, Default, Clone)]
struct Account {
    open: bool,
    closed: bool,
    balance: u64,
}

impl Aggregate for Account {
    const CATEGORY: &'static str = "account";
    type Event = AccountEvent;
    type Command = AccountCommand;
    type Error = AccountRefusal;

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::AccountOpened { deposit, .. } => {
                self.open = true;
                self.balance = *deposit;
            }
            AccountEvent::AccountClosed => self.closed = true,
            AccountEvent::Debited { amount, .. } => self.balance -= amount,
            AccountEvent::Credited { amount, .. } | AccountEvent::Refunded { amount, .. } => {
                self.balance += amount
            }
        }
    }

    fn handle(&self, command: AccountCommand) -> Result<Vec<AccountEvent>, AccountRefusal> {
        use AccountCommand as C;
        match command {
            C::Open { owner, deposit } => Ok(vec![AccountEvent::AccountOpened { owner, deposit }]),
            // A refund goes back to the account the money came from, even
            // if it was closed meanwhile.
            C::Refund { amount, transfer } => Ok(vec![AccountEvent::Refunded { amount, transfer }]),
            _ if !self.open => Err(AccountRefusal::NotOpen),
            _ if self.closed => Err(AccountRefusal::Closed),
            C::Close => Ok(vec![AccountEvent::AccountClosed]),
            C::Debit { amount, .. } if amount > self.balance => {
                Err(AccountRefusal::InsufficientFunds {
                    balance: self.balance,
                    asked: amount,
                })
            }
            C::Debit { amount, transfer } => Ok(vec![AccountEvent::Debited { amount, transfer }]),
            C::Credit { amount, transfer } => Ok(vec![AccountEvent::Credited { amount, transfer }]),
        }
    }
}

// ---------------------------------------------------------------------------
// Transfers: the request, and an approval for large ones
// ---------------------------------------------------------------------------

/// Transfers of this much or more wait for an approval.
const NEEDS_APPROVAL: u64 = 1_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
enum TransferEvent {
    TransferRequested {
        from: String,
        to: String,
        amount: u64,
    },
    TransferApproved,
}

#[derive(Debug, Clone)]
enum TransferCommand {
    Request {
        from: String,
        to: String,
        amount: u64,
    },
    Approve,
}

#[derive(Debug, thiserror::Error)]
#[error("the transfer was already requested")]
struct AlreadyRequested;

#[derive(Debug, Default, Clone)]
struct Transfer {
    requested: bool,
}

impl Aggregate for Transfer {
    const CATEGORY: &'static str = "transfer";
    type Event = TransferEvent;
    type Command = TransferCommand;
    type Error = AlreadyRequested;

    fn apply(&mut self, event: &TransferEvent) {
        if let TransferEvent::TransferRequested { .. } = event {
            self.requested = true;
        }
    }

    fn handle(&self, command: TransferCommand) -> Result<Vec<TransferEvent>, AlreadyRequested> {
        match command {
            TransferCommand::Request { .. } if self.requested => Err(AlreadyRequested),
            TransferCommand::Request { from, to, amount } => {
                Ok(vec![TransferEvent::TransferRequested { from, to, amount }])
            }
            TransferCommand::Approve => Ok(vec![TransferEvent::TransferApproved]),
        }
    }
}

// ---------------------------------------------------------------------------
// The saga
// ---------------------------------------------------------------------------

/// What the saga reacts to: transfers, and the accounts' debits.
#[derive(Debug, EventSet)]
enum TransferInput {
    #[events(aggregate = Transfer)]
    Transfer(TransferEvent),
    #[events(aggregate = Account)]
    Account(AccountEvent),
}

/// A transfer as the saga sees it, kept in its own stream.
#[derive(Debug, Default, Clone)]
struct Progress {
    from: String,
    to: String,
    amount: u64,
    debited: bool,
    approved: bool,
    outcome: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
enum ProgressEvent {
    TransferStarted {
        from: String,
        to: String,
        amount: u64,
    },
    SourceDebited,
    Approved,
    TransferEnded {
        outcome: String,
    },
}

impl SagaState for Progress {
    type Event = ProgressEvent;

    fn apply(&mut self, event: &ProgressEvent) {
        match event {
            ProgressEvent::TransferStarted { from, to, amount } => {
                (self.from, self.to, self.amount) = (from.clone(), to.clone(), *amount);
            }
            ProgressEvent::SourceDebited => self.debited = true,
            ProgressEvent::Approved => self.approved = true,
            ProgressEvent::TransferEnded { outcome } => self.outcome = Some(outcome.clone()),
        }
    }
}

struct Transfers;

impl Transfers {
    /// Credits the target; if it refuses, refunds the source. Either way
    /// the transfer ends.
    async fn credit_or_refund(reaction: &mut Reaction<Self>) -> Result<(), HandlerError> {
        let Progress {
            from, to, amount, ..
        } = reaction.state().clone();
        let transfer = reaction.instance().to_owned();
        let credit = AccountCommand::Credit {
            amount,
            transfer: transfer.clone(),
        };
        let outcome = match reaction.execute::<Account>(&to, credit).await {
            Ok(_) => "completed".to_owned(),
            Err(error) => match error.refusal() {
                Some(refusal) => {
                    // Compensation: the money goes back.
                    let refund = AccountCommand::Refund { amount, transfer };
                    reaction.execute::<Account>(&from, refund).await?;
                    format!("compensated: {to} refused the credit ({refusal}), {from} was refunded")
                }
                None => return Err(error.into()),
            },
        };
        reaction.record(ProgressEvent::TransferEnded { outcome });
        reaction.finish();
        Ok(())
    }
}

#[async_trait]
impl Saga for Transfers {
    type Events = TransferInput;
    type State = Progress;
    const NAME: &'static str = "transfers";

    fn instance(&self, event: &Envelope<TransferInput>) -> Option<String> {
        match &event.event {
            TransferInput::Transfer(_) => Some(event.stream_id.id().to_owned()),
            TransferInput::Account(AccountEvent::Debited { transfer, .. }) => {
                Some(transfer.clone())
            }
            TransferInput::Account(_) => None,
        }
    }

    async fn react(
        &self,
        reaction: &mut Reaction<Self>,
        input: Input<'_, TransferInput>,
    ) -> Result<(), HandlerError> {
        let event = match input {
            Input::Event(envelope) => &envelope.event,
            Input::Deadline(_) => {
                // Not approved in time: give the money back.
                let Progress { from, amount, .. } = reaction.state().clone();
                let refund = AccountCommand::Refund {
                    amount,
                    transfer: reaction.instance().to_owned(),
                };
                reaction.execute::<Account>(&from, refund).await?;
                let outcome =
                    format!("timed out: no approval within 5 minutes, {from} was refunded");
                reaction.record(ProgressEvent::TransferEnded { outcome });
                reaction.finish();
                return Ok(());
            }
            _ => return Ok(()),
        };
        match event {
            TransferInput::Transfer(TransferEvent::TransferRequested { from, to, amount }) => {
                reaction.record(ProgressEvent::TransferStarted {
                    from: from.clone(),
                    to: to.clone(),
                    amount: *amount,
                });
                let debit = AccountCommand::Debit {
                    amount: *amount,
                    transfer: reaction.instance().to_owned(),
                };
                match reaction.execute::<Account>(from, debit).await {
                    // The credit follows once the debit is in the log; a large
                    // transfer waits for an approval, five minutes at most.
                    Ok(_) if *amount >= NEEDS_APPROVAL => {
                        reaction.schedule("approval", Duration::from_secs(300));
                    }
                    Ok(_) => {}
                    Err(error) => {
                        let outcome = format!("rejected: {from} refused the debit ({error})");
                        reaction.record(ProgressEvent::TransferEnded { outcome });
                        reaction.finish();
                    }
                }
            }
            TransferInput::Account(AccountEvent::Debited { .. }) => {
                reaction.record(ProgressEvent::SourceDebited);
                let Progress {
                    amount, approved, ..
                } = *reaction.state();
                if amount < NEEDS_APPROVAL || approved {
                    reaction.cancel("approval");
                    Self::credit_or_refund(reaction).await?;
                }
            }
            TransferInput::Transfer(TransferEvent::TransferApproved) => {
                reaction.record(ProgressEvent::Approved);
                if reaction.state().debited {
                    reaction.cancel("approval");
                    Self::credit_or_refund(reaction).await?;
                }
            }
            TransferInput::Account(_) => {}
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The program
// ---------------------------------------------------------------------------

/// Waits until the saga has nothing left to do: it handled the log, and
/// its own reactions added nothing new.
async fn settle(running: &Running) -> Result<(), Box<dyn std::error::Error>> {
    running.wait_settled().await?;
    Ok(())
}

async fn balances(
    accounts: &Repository<Account, SqliteStore>,
    names: &[&str],
) -> Result<u64, Box<dyn std::error::Error>> {
    let mut total = 0;
    for name in names {
        let account = accounts.load(name).await?.state;
        let closed = if account.closed { " (closed)" } else { "" };
        println!("   {name:<8} {:>6}{closed}", account.balance);
        total += account.balance;
    }
    println!("   {:<8} {total:>6}", "total");
    Ok(total)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path =
        std::env::temp_dir().join(format!("annals-transfer-example-{}.db", std::process::id()));
    let store = SqliteStore::open(&path).await?;
    println!("Event store: {}\n", path.display());

    let clock = ManualClock::default();
    let running = Projections::new(store.clone())
        .clock(clock.clone())
        .saga(Transfers)
        .start()?;
    let accounts =
        Repository::<Account, _>::new(store.clone())?.with_retry(RetryPolicy::on_conflict(5));
    let transfers = Repository::<Transfer, _>::new(store.clone())?;

    println!("1. Four accounts; edsger's is closed");
    let names = ["ada", "grace", "edsger", "barbara"];
    for (name, deposit) in names.iter().zip([3_000, 500, 0, 100]) {
        let open = AccountCommand::Open {
            owner: (*name).into(),
            deposit,
        };
        accounts.execute(name, open, &CommandContext::new()).await?;
    }
    accounts
        .execute("edsger", AccountCommand::Close, &CommandContext::new())
        .await?;
    let before = balances(&accounts, &names).await?;

    let request = |from: &str, to: &str, amount: u64| TransferCommand::Request {
        from: from.into(),
        to: to.into(),
        amount,
    };
    let mut traced = None;
    println!("\n2. Transfers: each request is one command; the saga does the rest");
    for (id, from, to, amount) in [
        ("t1", "ada", "grace", 200),
        ("t2", "grace", "edsger", 100),
        ("t3", "ada", "barbara", 1_200),
    ] {
        let correlation = Uuid::now_v7();
        if id == "t2" {
            traced = Some(correlation);
        }
        let ctx = CommandContext::new().correlation_id(correlation);
        transfers
            .execute(id, request(from, to, amount), &ctx)
            .await?;
        settle(&running).await?;
        let progress = transfer_outcome(&store, id).await?;
        println!("   {id}: {from} -> {to}, {amount}: {progress}");
    }

    println!("   t4: ada -> grace, 1000, and a manager approves it");
    let ctx = CommandContext::new().correlation_id(Uuid::now_v7());
    transfers
        .execute("t4", request("ada", "grace", 1_000), &ctx)
        .await?;
    settle(&running).await?;
    println!(
        "       before the approval: {}",
        transfer_outcome(&store, "t4").await?
    );
    transfers
        .execute("t4", TransferCommand::Approve, &CommandContext::new())
        .await?;
    settle(&running).await?;
    println!("       after it: {}", transfer_outcome(&store, "t4").await?);

    println!("\n3. Five minutes pass without an approval for t3");
    clock.advance(Duration::from_secs(301));
    settle(&running).await?;
    println!("   t3: {}", transfer_outcome(&store, "t3").await?);

    println!("\n4. Balances: money moved, none was made or lost");
    let after = balances(&accounts, &names).await?;
    println!(
        "   the total is {} as before",
        if before == after {
            "the same"
        } else {
            "NOT the same"
        }
    );

    if let Some(correlation) = traced {
        println!("\n5. Everything transfer t2 caused, by its correlation id {correlation}");
        let mut read = ReadAll::after(Position::START);
        let mut seen = std::collections::HashMap::new();
        loop {
            let page = store.read_all(read.clone()).await?;
            for event in &page.events {
                seen.insert(
                    *event.event_id.as_uuid(),
                    (event.position, event.event_type.clone()),
                );
                if event.metadata.correlation_id != Some(correlation) {
                    continue;
                }
                let cause = match event.metadata.causation_id.and_then(|c| seen.get(&c)) {
                    Some((position, event_type)) => {
                        format!("caused by {} at {position}", event_type.as_str())
                    }
                    None => "the request".to_owned(),
                };
                println!(
                    "   position {:<3} {:<15} {:<22} {cause}",
                    event.position,
                    event.stream_id.as_str(),
                    event.event_type.as_str()
                );
            }
            if page.events.is_empty() {
                break;
            }
            read = read.after_position(page.read_through);
        }
    }
    running.stop().await;
    store.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    Ok(())
}

/// How the saga says transfer `id` stands, from its instance stream.
async fn transfer_outcome(
    store: &SqliteStore,
    id: &str,
) -> Result<String, Box<dyn std::error::Error>> {
    let instance =
        Repository::<annals::projections::saga::Instance<Transfers>, _>::new(store.clone())?
            .load(id)
            .await?
            .state;
    Ok(
        match (&instance.state.outcome, instance.deadlines.is_empty()) {
            (Some(outcome), _) => outcome.clone(),
            (None, false) => {
                "debited; waiting for an approval (a deadline is set for 5 minutes)".to_owned()
            }
            (None, true) => "in progress".to_owned(),
        },
    )
}
