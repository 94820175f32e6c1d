//! The domain of the `saga` scenario: accounts that are debited and
//! credited, transfer requests, and the saga that moves the money (the
//! happy path of `examples/transfer.rs`: debit the source on the request,
//! credit the target on the debit; no approvals, no deadlines).

use annals::projections::saga::{Input, Reaction, Saga, SagaState};
use annals::projections::{async_trait, Envelope, HandlerError};
use annals::{Aggregate, DomainEvent, EventSet};
use serde::{Deserialize, Serialize};

use crate::model::Refused;
use crate::raw::Encoded;

/// The events of an account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
pub(crate) enum LedgerEvent {
    Opened {
        owner: String,
        deposit: u64,
    },
    Debited {
        amount: u64,
        transfer: String,
        reference: String,
    },
    Credited {
        amount: u64,
        transfer: String,
        reference: String,
    },
}

#[derive(Debug, Clone)]
pub(crate) enum LedgerCommand {
    Open {
        owner: String,
        deposit: u64,
    },
    Debit {
        amount: u64,
        transfer: String,
        reference: String,
    },
    Credit {
        amount: u64,
        transfer: String,
        reference: String,
    },
}

/// An account: whether it is open, and its balance.
#[derive(Debug, Default, Clone)]
pub(crate) struct Ledger {
    open: bool,
    balance: u64,
}

impl Aggregate for Ledger {
    const CATEGORY: &'static str = "account";
    type Event = LedgerEvent;
    type Command = LedgerCommand;
    type Error = Refused;

    fn apply(&mut self, event: &LedgerEvent) {
        match event {
            LedgerEvent::Opened { deposit, .. } => {
                self.open = true;
                self.balance = *deposit;
            }
            LedgerEvent::Debited { amount, .. } => self.balance -= amount,
            LedgerEvent::Credited { amount, .. } => self.balance += amount,
        }
    }

    fn handle(&self, command: LedgerCommand) -> Result<Vec<LedgerEvent>, Refused> {
        use LedgerCommand as C;
        match command {
            C::Open { owner, deposit } if !self.open => {
                Ok(vec![LedgerEvent::Opened { owner, deposit }])
            }
            C::Open { .. } => Err(Refused),
            _ if !self.open => Err(Refused),
            C::Debit { amount, .. } if amount > self.balance => Err(Refused),
            C::Debit {
                amount,
                transfer,
                reference,
            } => Ok(vec![LedgerEvent::Debited {
                amount,
                transfer,
                reference,
            }]),
            C::Credit {
                amount,
                transfer,
                reference,
            } => Ok(vec![LedgerEvent::Credited {
                amount,
                transfer,
                reference,
            }]),
        }
    }
}

/// A transfer's request: its one event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
pub(crate) enum TransferEvent {
    TransferRequested {
        from: String,
        to: String,
        amount: u64,
        reference: String,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) amount: u64,
    pub(crate) reference: String,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct Transfer {
    requested: bool,
}

impl Aggregate for Transfer {
    const CATEGORY: &'static str = "transfer";
    type Event = TransferEvent;
    type Command = Request;
    type Error = Refused;

    fn apply(&mut self, _event: &TransferEvent) {
        self.requested = true;
    }

    fn handle(&self, request: Request) -> Result<Vec<TransferEvent>, Refused> {
        if self.requested {
            return Err(Refused);
        }
        let Request {
            from,
            to,
            amount,
            reference,
        } = request;
        Ok(vec![TransferEvent::TransferRequested {
            from,
            to,
            amount,
            reference,
        }])
    }
}

/// What the saga reacts to: requests, and the accounts' debits.
#[derive(EventSet)]
pub(crate) enum TransferInput {
    #[events(aggregate = Transfer)]
    Transfer(TransferEvent),
    #[events(aggregate = Ledger)]
    Account(LedgerEvent),
}

/// A transfer as the saga sees it, in its instance stream.
#[derive(Debug, Default, Clone)]
pub(crate) struct Progress {
    to: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
pub(crate) enum ProgressEvent {
    TransferStarted {
        from: String,
        to: String,
        amount: u64,
    },
    TransferCompleted,
}

impl SagaState for Progress {
    type Event = ProgressEvent;

    fn apply(&mut self, event: &ProgressEvent) {
        if let ProgressEvent::TransferStarted { to, .. } = event {
            self.to.clone_from(to);
        }
    }
}

/// The stored type of the event that ends a transfer, in the same append
/// as its credit.
pub(crate) const COMPLETED: &str = "TransferCompleted";

/// The saga: on a request, debit the source; on the debit, credit the
/// target and end. A refusal fails the saga (the workload has none).
pub(crate) struct Transfers;

#[async_trait]
impl Saga for Transfers {
    type Events = TransferInput;
    type State = Progress;
    const NAME: &'static str = "transfers";
    // Transfers here never wait: no deadline index to follow.
    const DEADLINES: bool = false;

    fn instance(&self, event: &Envelope<TransferInput>) -> Option<String> {
        match &event.event {
            TransferInput::Transfer(_) => Some(event.stream_id.id().to_owned()),
            TransferInput::Account(LedgerEvent::Debited { transfer, .. }) => Some(transfer.clone()),
            TransferInput::Account(_) => None,
        }
    }

    async fn react(
        &self,
        reaction: &mut Reaction<Self>,
        input: Input<'_, TransferInput>,
    ) -> Result<(), HandlerError> {
        let Input::Event(envelope) = input else {
            return Ok(());
        };
        match &envelope.event {
            TransferInput::Transfer(TransferEvent::TransferRequested {
                from,
                to,
                amount,
                reference,
            }) => {
                reaction.record(ProgressEvent::TransferStarted {
                    from: from.clone(),
                    to: to.clone(),
                    amount: *amount,
                });
                let debit = LedgerCommand::Debit {
                    amount: *amount,
                    transfer: reaction.instance().to_owned(),
                    reference: reference.clone(),
                };
                reaction.execute::<Ledger>(from, debit).await?;
            }
            TransferInput::Account(LedgerEvent::Debited {
                amount, reference, ..
            }) => {
                let credit = LedgerCommand::Credit {
                    amount: *amount,
                    transfer: reaction.instance().to_owned(),
                    reference: reference.clone(),
                };
                let to = reaction.state().to.clone();
                reaction.execute::<Ledger>(&to, credit).await?;
                reaction.record(ProgressEvent::TransferCompleted);
                reaction.finish();
            }
            TransferInput::Account(_) => {}
        }
        Ok(())
    }
}

#[derive(Serialize)]
struct MovedBody<'a> {
    amount: u64,
    transfer: &'a str,
    reference: &'a str,
}

#[derive(Serialize)]
struct OpenedBody<'a> {
    owner: &'a str,
    deposit: u64,
}

/// An account's event as the baseline stores it: the payload annals
/// writes for it, encoded by hand.
pub(crate) fn encode_raw(event: &LedgerEvent) -> Encoded {
    let payload = match event {
        LedgerEvent::Opened { owner, deposit } => serde_json::to_string(&OpenedBody {
            owner,
            deposit: *deposit,
        }),
        LedgerEvent::Debited {
            amount,
            transfer,
            reference,
        }
        | LedgerEvent::Credited {
            amount,
            transfer,
            reference,
        } => serde_json::to_string(&MovedBody {
            amount: *amount,
            transfer,
            reference,
        }),
    };
    Encoded {
        event_type: event.event_type(),
        schema_version: event.schema_version(),
        // Plain strings and integers always serialize.
        payload: payload.expect("account events serialize"),
    }
}
