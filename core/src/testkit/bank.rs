//! A bank account: the aggregate used by the documentation and the test suites.

use serde::{Deserialize, Serialize};

use crate::{Aggregate, DomainEvent};

/// What happened to an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, DomainEvent)]
pub enum AccountEvent {
    /// The account was opened.
    Opened {
        /// Who owns it.
        owner: String,
    },
    /// Money came in.
    Deposited {
        /// How much, in cents.
        amount: u64,
    },
    /// Money went out.
    Withdrawn {
        /// How much, in cents.
        amount: u64,
    },
}

/// What can be asked of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountCommand {
    /// Open the account.
    Open {
        /// Who owns it.
        owner: String,
    },
    /// Put money in.
    Deposit {
        /// How much, in cents.
        amount: u64,
    },
    /// Take money out; refused if it would overdraw the account.
    Withdraw {
        /// How much, in cents.
        amount: u64,
    },
}

/// Why an account refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BankError {
    /// The account is already open.
    #[error("the account is already open")]
    AlreadyOpen,
    /// The account has not been opened.
    #[error("the account is not open")]
    NotOpen,
    /// Amounts must be positive.
    #[error("the amount must be more than zero")]
    ZeroAmount,
    /// The withdrawal would overdraw the account.
    #[error("insufficient funds: balance {balance}, requested {requested}")]
    InsufficientFunds {
        /// The balance, in cents.
        balance: u64,
        /// The amount asked for, in cents.
        requested: u64,
    },
}

/// A bank account's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Whether the account was opened.
    pub open: bool,
    /// Who owns it.
    pub owner: String,
    /// The balance, in cents.
    pub balance: u64,
}

impl Aggregate for Account {
    const CATEGORY: &'static str = "account";
    type Event = AccountEvent;
    type Command = AccountCommand;
    type Error = BankError;

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened { owner } => {
                self.open = true;
                self.owner.clone_from(owner);
            }
            AccountEvent::Deposited { amount } => {
                self.balance = self.balance.saturating_add(*amount);
            }
            AccountEvent::Withdrawn { amount } => {
                self.balance = self.balance.saturating_sub(*amount);
            }
        }
    }

    fn handle(&self, command: AccountCommand) -> Result<Vec<AccountEvent>, BankError> {
        match command {
            AccountCommand::Open { .. } if self.open => Err(BankError::AlreadyOpen),
            AccountCommand::Open { owner } => Ok(vec![AccountEvent::Opened { owner }]),
            _ if !self.open => Err(BankError::NotOpen),
            AccountCommand::Deposit { amount: 0 } | AccountCommand::Withdraw { amount: 0 } => {
                Err(BankError::ZeroAmount)
            }
            AccountCommand::Deposit { amount } => Ok(vec![AccountEvent::Deposited { amount }]),
            AccountCommand::Withdraw { amount } if amount > self.balance => {
                Err(BankError::InsufficientFunds {
                    balance: self.balance,
                    requested: amount,
                })
            }
            AccountCommand::Withdraw { amount } => Ok(vec![AccountEvent::Withdrawn { amount }]),
        }
    }
}
