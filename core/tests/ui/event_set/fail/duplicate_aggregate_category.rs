use std::convert::Infallible;

use annals_core::testkit::bank::{Account, AccountEvent};
use annals_core::Aggregate;

#[derive(serde::Serialize, serde::Deserialize, annals_core::DomainEvent)]
enum AuditEvent {
    NoteTaken,
}

/// Another aggregate that stores its events in the accounts' category.
#[derive(Clone, Default)]
struct Savings;

impl Aggregate for Savings {
    const CATEGORY: &'static str = "account";
    type Event = AuditEvent;
    type Command = ();
    type Error = Infallible;
    fn apply(&mut self, _: &AuditEvent) {}
    fn handle(&self, (): ()) -> Result<Vec<AuditEvent>, Infallible> {
        Ok(Vec::new())
    }
}

#[derive(annals_core::EventSet)]
enum NameAndAggregate {
    #[events(category = "account")]
    Audit(AuditEvent),
    #[events(aggregate = Account)]
    Account(AccountEvent),
}

#[derive(annals_core::EventSet)]
enum TwoAggregates {
    #[events(aggregate = Account)]
    Account(AccountEvent),
    #[events(aggregate = Savings)]
    Savings(AuditEvent),
}

fn main() {}
