//! A bank whose transfers a saga drives, and what a log of it must show.
//!
//! A transfer is asked for by appending `TransferRequested` to
//! `transfer-{id}`. The saga debits the source; once the debit is in the
//! log it credits the target, or refunds the source if the target refuses
//! (a closed account). A transfer of [`NEEDS_APPROVAL`] or more credits
//! only after a `TransferApproved`, and waits for it [`APPROVAL_WINDOW`] at
//! most: then a deadline refunds it. So each transfer ends in exactly one
//! [`Outcome`], recorded in its instance stream `transfers-{id}`.
//!
//! The checks read the log alone, so they hold for any store and any
//! history of crashes.

// Each test file uses a part of it.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use annals_core::{
    Aggregate, AppendRequest, DomainEvent, EventSet, EventStore, ExpectedVersion, Metadata,
    NewEvent, RecordedEvent, StreamId,
};
use annals_projections::saga::{Input, InstanceEvent, Reaction, Saga, SagaState};
use annals_projections::{Envelope, HandlerError};
use serde::{Deserialize, Serialize};

/// Transfers of this many cents or more wait for an approval.
pub const NEEDS_APPROVAL: u64 = 1_000;
/// How long a transfer waits for its approval.
pub const APPROVAL_WINDOW: Duration = Duration::from_secs(60);
/// The name of the approval deadline.
const APPROVAL: &str = "approval";

// ---------------------------------------------------------------------------
// Accounts

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
pub enum AccountEvent {
    AccountOpened { cents: u64 },
    AccountClosed,
    Deposited { cents: u64 },
    Withdrawn { cents: u64 },
    Debited { cents: u64, transfer: String },
    Credited { cents: u64, transfer: String },
    Refunded { cents: u64, transfer: String },
}

#[derive(Debug, Clone)]
pub enum AccountCommand {
    Open(u64),
    Close,
    Debit(u64, String),
    Credit(u64, String),
    Refund(u64, String),
}

#[derive(Debug, thiserror::Error)]
pub enum AccountRefusal {
    #[error("the account is closed")]
    Closed,
    #[error("not enough money")]
    Short,
}

#[derive(Debug, Default, Clone)]
pub struct Account {
    pub cents: u64,
    pub closed: bool,
}

impl Aggregate for Account {
    const CATEGORY: &'static str = "account";
    type Event = AccountEvent;
    type Command = AccountCommand;
    type Error = AccountRefusal;

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::AccountOpened { cents } => self.cents = *cents,
            AccountEvent::AccountClosed => self.closed = true,
            AccountEvent::Debited { cents, .. } | AccountEvent::Withdrawn { cents } => {
                self.cents -= cents
            }
            AccountEvent::Deposited { cents }
            | AccountEvent::Credited { cents, .. }
            | AccountEvent::Refunded { cents, .. } => self.cents += cents,
        }
    }

    fn handle(&self, command: AccountCommand) -> Result<Vec<AccountEvent>, AccountRefusal> {
        use AccountCommand as C;
        Ok(vec![match command {
            C::Open(cents) => AccountEvent::AccountOpened { cents },
            // The money goes back where it came from, closed or not.
            C::Refund(cents, transfer) => AccountEvent::Refunded { cents, transfer },
            _ if self.closed => return Err(AccountRefusal::Closed),
            C::Close => AccountEvent::AccountClosed,
            C::Debit(cents, _) if cents > self.cents => return Err(AccountRefusal::Short),
            C::Debit(cents, transfer) => AccountEvent::Debited { cents, transfer },
            C::Credit(cents, transfer) => AccountEvent::Credited { cents, transfer },
        }])
    }
}

// ---------------------------------------------------------------------------
// Requests, as the tests append them

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
pub enum TransferEvent {
    TransferRequested {
        from: String,
        to: String,
        cents: u64,
    },
    TransferApproved,
}

/// A transfer asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub id: String,
    pub from: String,
    pub to: String,
    pub cents: u64,
}

/// What a test appends, one append each.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Request(Request),
    Approve(String),
    Deposit(String, u64),
    /// Taken out by another writer, unchecked: the test keeps it covered.
    Withdraw(String, u64),
}

/// The requests among `steps`.
pub fn requests(steps: &[Step]) -> Vec<Request> {
    steps
        .iter()
        .filter_map(|s| match s {
            Step::Request(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

/// Appends one step, as another writer of the log would (no causation).
pub async fn append_step<S: EventStore + ?Sized>(store: &S, step: &Step) -> Result<(), String> {
    let (stream, expected, event) = match step {
        Step::Request(r) => (
            format!("transfer-{}", r.id),
            ExpectedVersion::NoStream,
            encode(&TransferEvent::TransferRequested {
                from: r.from.clone(),
                to: r.to.clone(),
                cents: r.cents,
            })?,
        ),
        Step::Approve(id) => (
            format!("transfer-{id}"),
            ExpectedVersion::Any,
            encode(&TransferEvent::TransferApproved)?,
        ),
        Step::Deposit(account, cents) => (
            format!("account-{account}"),
            ExpectedVersion::Any,
            encode(&AccountEvent::Deposited { cents: *cents })?,
        ),
        Step::Withdraw(account, cents) => (
            format!("account-{account}"),
            ExpectedVersion::Any,
            encode(&AccountEvent::Withdrawn { cents: *cents })?,
        ),
    };
    let stream = StreamId::new(stream).map_err(|e| e.to_string())?;
    store
        .append(AppendRequest::to_stream(stream, expected, vec![event]))
        .await
        .map_err(|e| format!("appending {step:?}: {e}"))?;
    Ok(())
}

fn encode<E: DomainEvent>(event: &E) -> Result<NewEvent, String> {
    NewEvent::from_domain(event, Metadata::default()).map_err(|e| e.to_string())
}

/// Opens the accounts, `(name, cents, closed)`, and closes the closed ones.
pub async fn open_accounts<S>(store: &S, accounts: &[(String, u64, bool)]) -> Result<(), String>
where
    S: EventStore + Clone + 'static,
{
    let repo =
        annals_core::Repository::<Account, _>::new(store.clone()).map_err(|e| e.to_string())?;
    let ctx = annals_core::CommandContext::new();
    for (name, cents, closed) in accounts {
        repo.execute(name, AccountCommand::Open(*cents), &ctx)
            .await
            .map_err(|e| e.to_string())?;
        if *closed {
            repo.execute(name, AccountCommand::Close, &ctx)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The saga

#[derive(Debug, EventSet)]
pub enum TransferInput {
    #[events(category = "transfer")]
    Transfer(TransferEvent),
    #[events(aggregate = Account)]
    Account(AccountEvent),
}

/// How a transfer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Outcome {
    /// Debited, then credited.
    Completed,
    /// Debited, the credit refused, refunded.
    Compensated,
    /// The debit refused: nothing moved.
    Rejected,
    /// Debited, no approval in time, refunded.
    TimedOut,
}

/// A transfer as the saga sees it.
#[derive(Debug, Default, Clone)]
pub struct Progress {
    pub from: String,
    pub to: String,
    pub cents: u64,
    pub debited: bool,
    pub approved: bool,
    pub outcome: Option<Outcome>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
pub enum ProgressEvent {
    TransferStarted {
        from: String,
        to: String,
        cents: u64,
    },
    SourceDebited,
    Approved,
    TransferEnded {
        outcome: Outcome,
    },
}

impl SagaState for Progress {
    type Event = ProgressEvent;

    fn apply(&mut self, event: &ProgressEvent) {
        match event {
            ProgressEvent::TransferStarted { from, to, cents } => {
                (self.from, self.to, self.cents) = (from.clone(), to.clone(), *cents);
            }
            ProgressEvent::SourceDebited => self.debited = true,
            ProgressEvent::Approved => self.approved = true,
            ProgressEvent::TransferEnded { outcome } => self.outcome = Some(*outcome),
        }
    }
}

/// Another writer that changes a request's source account (`change` is a
/// deposit or a withdrawal) while the request's reaction runs, once
/// armed: a reaction that decided on the account then meets a conflict.
pub struct Interference {
    pub store: Arc<dyn EventStore>,
    pub armed: Arc<AtomicBool>,
    pub change: Step,
}

/// The transfer saga.
#[derive(Default)]
pub struct Transfers {
    /// Runs of `react`, re-runs included.
    pub reactions: Arc<AtomicU64>,
    pub interference: Option<Interference>,
}

impl Transfers {
    fn end(reaction: &mut Reaction<Self>, outcome: Outcome) {
        reaction.record(ProgressEvent::TransferEnded { outcome });
        reaction.finish();
    }

    /// Credits the target, or refunds the source if the target refuses.
    async fn credit_or_refund(reaction: &mut Reaction<Self>) -> Result<(), HandlerError> {
        reaction.cancel(APPROVAL);
        let Progress {
            from, to, cents, ..
        } = reaction.state().clone();
        let id = reaction.instance().to_owned();
        let outcome = match reaction
            .execute::<Account>(&to, AccountCommand::Credit(cents, id.clone()))
            .await
        {
            Ok(_) => Outcome::Completed,
            Err(error) if error.refusal().is_some() => {
                reaction
                    .execute::<Account>(&from, AccountCommand::Refund(cents, id))
                    .await?;
                Outcome::Compensated
            }
            Err(error) => return Err(error.into()),
        };
        Self::end(reaction, outcome);
        Ok(())
    }

    async fn interfere(&self, reaction: &Reaction<Self>, from: &str) -> Result<(), HandlerError> {
        let Some(other) = &self.interference else {
            return Ok(());
        };
        // Loaded first, so that the deposit lands after the load.
        reaction.load::<Account>(from).await?;
        if other.armed.swap(false, Ordering::SeqCst) {
            append_step(&*other.store, &other.change).await?;
        }
        Ok(())
    }
}

#[annals_projections::async_trait]
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
        self.reactions.fetch_add(1, Ordering::SeqCst);
        let id = reaction.instance().to_owned();
        let event = match input {
            Input::Event(envelope) => &envelope.event,
            Input::Deadline(_) => {
                // No approval in time: the money goes back.
                let Progress { from, cents, .. } = reaction.state().clone();
                reaction
                    .execute::<Account>(&from, AccountCommand::Refund(cents, id))
                    .await?;
                Self::end(reaction, Outcome::TimedOut);
                return Ok(());
            }
            _ => return Ok(()),
        };
        match event {
            TransferInput::Transfer(TransferEvent::TransferRequested { from, to, cents }) => {
                reaction.record(ProgressEvent::TransferStarted {
                    from: from.clone(),
                    to: to.clone(),
                    cents: *cents,
                });
                self.interfere(reaction, from).await?;
                match reaction
                    .execute::<Account>(from, AccountCommand::Debit(*cents, id))
                    .await
                {
                    Ok(_) if *cents >= NEEDS_APPROVAL => {
                        reaction.schedule(APPROVAL, APPROVAL_WINDOW);
                    }
                    // The credit follows once the debit is in the log.
                    Ok(_) => {}
                    Err(error) if error.refusal().is_some() => {
                        Self::end(reaction, Outcome::Rejected);
                    }
                    Err(error) => return Err(error.into()),
                }
            }
            TransferInput::Account(AccountEvent::Debited { .. }) => {
                reaction.record(ProgressEvent::SourceDebited);
                let Progress {
                    cents, approved, ..
                } = *reaction.state();
                if cents < NEEDS_APPROVAL || approved {
                    Self::credit_or_refund(reaction).await?;
                }
            }
            TransferInput::Transfer(TransferEvent::TransferApproved) => {
                reaction.record(ProgressEvent::Approved);
                if reaction.state().debited {
                    Self::credit_or_refund(reaction).await?;
                }
            }
            TransferInput::Account(_) => {}
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// What the log must show

/// A money move of one account for one transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Move {
    Debited,
    Credited,
    Refunded,
}

/// How each transfer ended, and how many ended each way.
#[derive(Debug, Default)]
pub struct Tally {
    pub outcomes: BTreeMap<String, Outcome>,
}

impl Tally {
    pub fn count(&self, outcome: Outcome) -> usize {
        self.outcomes.values().filter(|o| **o == outcome).count()
    }

    pub fn summary(&self) -> String {
        [
            Outcome::Completed,
            Outcome::Compensated,
            Outcome::Rejected,
            Outcome::TimedOut,
        ]
        .iter()
        .map(|o| format!("{o:?} {}", self.count(*o)))
        .collect::<Vec<_>>()
        .join(", ")
    }
}

/// What the log holds, read once.
struct Read<'a> {
    /// `(account, transfer, move)` to how many such events.
    moves: HashMap<(&'a str, &'a str, Move), usize>,
    /// Each transfer's outcomes, in log order.
    ended: HashMap<&'a str, Vec<Outcome>>,
    /// Each transfer's `SagaFinished` and `SagaDeadlineFired` counts.
    finished: HashMap<&'a str, (usize, usize)>,
    /// Balances from the whole log, and the money put in (opening
    /// deposits and deposits, less withdrawals).
    balances: BTreeMap<&'a str, i64>,
    put_in: i64,
}

/// One account as the log makes it, with its balance after each change.
#[derive(Default)]
struct Ledger {
    closed: bool,
    /// `(position, balance after it)`.
    history: Vec<(u64, i64)>,
}

impl Ledger {
    fn balance(&self) -> i64 {
        self.history.last().map_or(0, |h| h.1)
    }

    /// The lowest balance from `position` (as it stood there) on.
    fn lowest_since(&self, position: u64) -> i64 {
        let from = self.history.partition_point(|h| h.0 <= position);
        let then = from.checked_sub(1).map_or(0, |i| self.history[i].1);
        self.history[from..]
            .iter()
            .map(|h| h.1)
            .fold(then, i64::min)
    }
}

/// Checks what holds at any moment, crash or not, and returns what the
/// log holds:
/// - each reaction committed once: the events one cause (a triggering
///   event, or a deadline's setting) caused are one append, consecutive
///   positions with no `(stream, type)` twice;
/// - no account moved money twice for one transfer, and each move is of
///   the transfer's amount;
/// - no transfer ended, finished or fired its deadline twice;
/// - each decision is one the reaction could make alone: a debit only of
///   an open account that has the money and a credit only of an open one
///   (both as the log stands at their append, which checks the versions
///   they were decided on); a rejection only of a source that was closed
///   or short at some moment since the request (a refused command is not
///   part of the append, so its account is not checked at commit); a
///   compensation only for a closed target; no balance ever below zero.
fn read_log<'a>(log: &'a [RecordedEvent], requests: &'a [Request]) -> Result<Read<'a>, String> {
    let by_id: HashMap<&str, &Request> = requests.iter().map(|r| (r.id.as_str(), r)).collect();
    each_cause_committed_once(log)?;
    let mut read = Read {
        moves: HashMap::new(),
        ended: HashMap::new(),
        finished: HashMap::new(),
        balances: BTreeMap::new(),
        put_in: 0,
    };
    let mut ledgers: HashMap<&str, Ledger> = HashMap::new();
    let mut requested_at: HashMap<&str, u64> = HashMap::new();
    let signed = |cents: u64| i64::try_from(cents).map_err(|e| e.to_string());
    for event in log {
        let (stream, at) = (&event.stream_id, event.position.0);
        match stream.category() {
            "transfer" => {
                requested_at.entry(stream.id()).or_insert(at);
            }
            "account" => {
                let account = stream.id();
                let decoded: AccountEvent = event.decode().map_err(|e| e.to_string())?;
                let ledger = ledgers.entry(account).or_default();
                let balance = ledger.balance();
                let (change, moved) = match &decoded {
                    AccountEvent::AccountOpened { cents } | AccountEvent::Deposited { cents } => {
                        read.put_in += signed(*cents)?;
                        (signed(*cents)?, None)
                    }
                    AccountEvent::Withdrawn { cents } => {
                        read.put_in -= signed(*cents)?;
                        (-signed(*cents)?, None)
                    }
                    AccountEvent::AccountClosed => {
                        ledger.closed = true;
                        (0, None)
                    }
                    AccountEvent::Debited { cents, transfer } => {
                        if ledger.closed || balance < signed(*cents)? {
                            return Err(format!(
                                "at {at}: {account} debited {cents} for {transfer} with {balance} (closed: {})",
                                ledger.closed
                            ));
                        }
                        (-signed(*cents)?, Some((transfer, cents, Move::Debited)))
                    }
                    AccountEvent::Credited { cents, transfer } => {
                        if ledger.closed {
                            return Err(format!(
                                "at {at}: closed {account} credited for {transfer}"
                            ));
                        }
                        (signed(*cents)?, Some((transfer, cents, Move::Credited)))
                    }
                    AccountEvent::Refunded { cents, transfer } => {
                        (signed(*cents)?, Some((transfer, cents, Move::Refunded)))
                    }
                };
                if balance + change < 0 {
                    return Err(format!("at {at}: {account} went below zero"));
                }
                ledger.history.push((at, balance + change));
                read.balances.insert(account, balance + change);
                let Some((transfer, cents, kind)) = moved else {
                    continue;
                };
                let asked = by_id
                    .get(transfer.as_str())
                    .ok_or_else(|| format!("at {at}: a move for unknown transfer {transfer}"))?;
                if *cents != asked.cents {
                    return Err(format!(
                        "at {at}: {kind:?} {cents} for {transfer}, which asked for {}",
                        asked.cents
                    ));
                }
                let count = read
                    .moves
                    .entry((account, asked.id.as_str(), kind))
                    .or_default();
                *count += 1;
                if *count > 1 {
                    return Err(format!("at {at}: {account} {kind:?} twice for {transfer}"));
                }
            }
            "transfers" => {
                let transfer = stream.id();
                let decoded: InstanceEvent<ProgressEvent> =
                    event.decode().map_err(|e| e.to_string())?;
                let counts = read.finished.entry(transfer).or_default();
                match decoded {
                    InstanceEvent::Finished => counts.0 += 1,
                    InstanceEvent::DeadlineFired { .. } => counts.1 += 1,
                    InstanceEvent::State(ProgressEvent::TransferEnded { outcome }) => {
                        let asked = by_id
                            .get(transfer)
                            .ok_or_else(|| format!("at {at}: unknown transfer {transfer} ended"))?;
                        let since = requested_at.get(transfer).copied().unwrap_or(0);
                        let cents = signed(asked.cents)?;
                        let (from, to) = (
                            ledgers.get(asked.from.as_str()),
                            ledgers.get(asked.to.as_str()),
                        );
                        let fits = match outcome {
                            Outcome::Rejected => {
                                from.is_none_or(|l| l.closed || l.lowest_since(since) < cents)
                            }
                            Outcome::Compensated => to.is_none_or(|l| l.closed),
                            Outcome::Completed | Outcome::TimedOut => true,
                        };
                        if !fits {
                            return Err(format!(
                                "at {at}: {transfer} ({} -> {}, {}) ended {outcome:?}, which the log since {since} does not allow",
                                asked.from, asked.to, asked.cents
                            ));
                        }
                        read.ended.entry(transfer).or_default().push(outcome);
                    }
                    _ => {}
                }
                let (finished, fired) = read.finished[transfer];
                let ended = read.ended.get(transfer).map_or(0, Vec::len);
                if finished > 1 || fired > 1 || ended > 1 {
                    return Err(format!(
                        "at {at}: {transfer} ended {ended} times, finished {finished}, fired {fired}"
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(read)
}

/// Every event that names a cause: what one cause decided is there once.
/// (It is committed in one append, but not always in consecutive
/// positions: a saga commits the reactions of a batch in one append, which
/// keeps each stream's events together.)
fn each_cause_committed_once(log: &[RecordedEvent]) -> Result<(), String> {
    let mut by_cause: HashMap<uuid::Uuid, Vec<&RecordedEvent>> = HashMap::new();
    for event in log {
        if let Some(cause) = event.metadata.causation_id {
            by_cause.entry(cause).or_default().push(event);
        }
    }
    for (cause, events) in by_cause {
        let mut kinds: Vec<(&str, &str)> = events
            .iter()
            .map(|e| (e.stream_id.as_str(), e.event_type.as_str()))
            .collect();
        kinds.sort_unstable();
        kinds.dedup();
        if kinds.len() != events.len() {
            let seen: Vec<String> = events
                .iter()
                .map(|e| format!("{} {} {}", e.position, e.stream_id, e.event_type))
                .collect();
            return Err(format!(
                "what {cause} caused was committed more than once: {}",
                seen.join("; ")
            ));
        }
    }
    Ok(())
}

/// [`read_log`]'s checks: what holds at any moment, crash or not.
pub fn check_consistent(log: &[RecordedEvent], requests: &[Request]) -> Result<(), String> {
    read_log(log, requests).map(|_| ())
}

/// Once everything settled: [`check_consistent`], every transfer asked
/// for ended once, with exactly the moves its outcome means, and the
/// balances add up to `put_in`, the money the test put in (less what it
/// took out).
pub fn check_settled(
    log: &[RecordedEvent],
    requests: &[Request],
    put_in: i64,
) -> Result<Tally, String> {
    let read = read_log(log, requests)?;
    let mut tally = Tally::default();
    for request in requests {
        let id = request.id.as_str();
        let outcome = match read.ended.get(id).map(Vec::as_slice) {
            Some([outcome]) => *outcome,
            other => return Err(format!("{id} ended {other:?}, not once")),
        };
        if read.finished.get(id).map(|f| f.0) != Some(1) {
            return Err(format!("{id} ended {outcome:?} but did not finish once"));
        }
        let count =
            |account: &str, kind| read.moves.get(&(account, id, kind)).copied().unwrap_or(0);
        let (from, to) = (request.from.as_str(), request.to.as_str());
        let moved = [
            count(from, Move::Debited),
            count(to, Move::Credited),
            count(from, Move::Refunded),
        ];
        let expected = match outcome {
            Outcome::Completed => [1, 1, 0],
            Outcome::Compensated | Outcome::TimedOut => [1, 0, 1],
            Outcome::Rejected => [0, 0, 0],
        };
        let all: usize = read
            .moves
            .iter()
            .filter(|((_, t, _), _)| *t == id)
            .map(|(_, n)| n)
            .sum();
        if moved != expected || all != expected.iter().sum::<usize>() {
            return Err(format!(
                "{id} ended {outcome:?} with debits, credits, refunds {moved:?} ({all} moves in all)"
            ));
        }
        tally.outcomes.insert(request.id.clone(), outcome);
    }
    let total: i64 = read.balances.values().sum();
    if total != put_in || read.put_in != put_in {
        return Err(format!(
            "the balances add up to {total}; {put_in} was put in ({} by the log)",
            read.put_in
        ));
    }
    Ok(tally)
}
