//! The workload's domain: bank accounts, with events decoded the framework
//! way (the derive) and the raw way (serde structs picked by type name).

use annals::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::shape::Shape;

/// The events of a bank account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
pub(crate) enum BankEvent {
    Opened { owner: String },
    Deposited { amount: u64, reference: String },
}

impl BankEvent {
    /// What the event adds to the account's balance.
    pub(crate) fn amount(&self) -> u64 {
        match self {
            BankEvent::Opened { .. } => 0,
            BankEvent::Deposited { amount, .. } => *amount,
        }
    }
}

impl AsRef<BankEvent> for BankEvent {
    fn as_ref(&self) -> &BankEvent {
        self
    }
}

/// Commands of the workload.
#[derive(Debug, Clone)]
pub(crate) enum BankCommand {
    Open { owner: String },
    Deposit { amount: u64, reference: String },
}

/// A refused command (never happens in the workload).
#[derive(Debug)]
pub(crate) struct Refused;

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("refused")
    }
}

impl std::error::Error for Refused {}

/// An account's state.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Account {
    pub(crate) open: bool,
    pub(crate) balance: u64,
    pub(crate) deposits: u64,
}

impl Account {
    /// The same fold the raw baseline does.
    pub(crate) fn fold(&mut self, event: &BankEvent) {
        match event {
            BankEvent::Opened { .. } => self.open = true,
            BankEvent::Deposited { amount, .. } => {
                self.balance = self.balance.wrapping_add(*amount);
                self.deposits += 1;
            }
        }
    }
}

impl Aggregate for Account {
    const CATEGORY: &'static str = "account";
    type Event = BankEvent;
    type Command = BankCommand;
    type Error = Refused;

    fn apply(&mut self, event: &BankEvent) {
        self.fold(event);
    }

    fn handle(&self, command: BankCommand) -> Result<Vec<BankEvent>, Refused> {
        match command {
            BankCommand::Open { .. } if self.open => Err(Refused),
            BankCommand::Open { owner } => Ok(vec![BankEvent::Opened { owner }]),
            BankCommand::Deposit { .. } if !self.open => Err(Refused),
            BankCommand::Deposit { amount, reference } => {
                Ok(vec![BankEvent::Deposited { amount, reference }])
            }
        }
    }
}

/// The command stream of the write scenarios: each account is opened by
/// its first command, then receives deposits, round-robin.
pub(crate) fn command(n: usize, accounts: usize, shape: Shape) -> (String, BankCommand) {
    let account = n % accounts;
    let command = if n < accounts {
        BankCommand::Open {
            owner: shape.owner(account),
        }
    } else {
        let amount = u64::try_from(n).unwrap_or(u64::MAX);
        BankCommand::Deposit {
            amount,
            reference: shape.reference(amount),
        }
    };
    (account.to_string(), command)
}

/// Event `n` (from 0) of account `account`: opened, then deposits.
pub(crate) fn account_event(shape: Shape, account: usize, n: usize) -> BankEvent {
    match n {
        0 => BankEvent::Opened {
            owner: match shape {
                Shape::Realistic => shape.owner(account),
                Shape::Small => "owner".into(),
            },
        },
        n => {
            let amount = u64::try_from(n).unwrap_or(u64::MAX);
            BankEvent::Deposited {
                amount,
                reference: shape.reference(amount),
            }
        }
    }
}

/// The event the raw baseline writes for a command: what the aggregate
/// decides, without the framework.
pub(crate) fn event_for(command: BankCommand) -> BankEvent {
    match command {
        BankCommand::Open { owner } => BankEvent::Opened { owner },
        BankCommand::Deposit { amount, reference } => BankEvent::Deposited { amount, reference },
    }
}

#[derive(Serialize, Deserialize)]
struct OpenedBody<S> {
    owner: S,
}

#[derive(Serialize, Deserialize)]
struct DepositedBody<S> {
    amount: u64,
    reference: S,
}

/// Decodes a stored event by hand, as code without the framework would.
pub(crate) fn decode_raw(event_type: &str, payload: &str) -> Result<BankEvent, String> {
    match event_type {
        "Opened" => serde_json::from_str::<OpenedBody<String>>(payload)
            .map(|b| BankEvent::Opened { owner: b.owner })
            .map_err(|e| e.to_string()),
        "Deposited" => serde_json::from_str::<DepositedBody<String>>(payload)
            .map(|b| BankEvent::Deposited {
                amount: b.amount,
                reference: b.reference,
            })
            .map_err(|e| e.to_string()),
        other => Err(format!("unknown event type {other}")),
    }
}

/// The payload the raw baseline writes for a command, as the framework would.
pub(crate) fn encode_raw(event: &BankEvent) -> (&'static str, String) {
    let payload = match event {
        BankEvent::Opened { owner } => serde_json::to_string(&OpenedBody { owner }),
        BankEvent::Deposited { amount, reference } => serde_json::to_string(&DepositedBody {
            amount: *amount,
            reference,
        }),
    };
    // Plain strings and integers always serialize.
    let payload = payload.expect("bank events serialize");
    (event.event_type(), payload)
}
