//! Every documented attribute form compiles: categories by name and by
//! aggregate, variants in any stream, and the crate path.
use annals_core::testkit::bank::{Account, AccountEvent};
use annals_core::{DomainEvent, EventSet, Position, ReadAll};

#[derive(serde::Serialize, serde::Deserialize, DomainEvent)]
enum OrderEvent {
    OrderPlaced,
}

#[derive(serde::Serialize, serde::Deserialize, DomainEvent)]
enum AuditEvent {
    NoteTaken,
}

mod bank {
    pub use annals_core::testkit::bank::Account;
}

#[derive(EventSet)]
#[events(crate = ::annals_core)]
enum ByCategory {
    #[events(category = "order")]
    Order(OrderEvent),
    #[events(aggregate = bank::Account)]
    Account(AccountEvent),
}

#[derive(EventSet)]
#[events(crate = "annals_core")]
enum Mixed {
    #[events(aggregate = "Account")]
    Account(AccountEvent),
    #[events()]
    Audit(AuditEvent),
    Order(r#OrderEvent),
}

fn main() {
    let read = ByCategory::narrow(ReadAll::after(Position::START));
    assert_eq!(read.filter().categories(), ["order", "account"]);
    let read = Mixed::narrow(ReadAll::after(Position::START));
    assert!(read.filter().categories().is_empty());
}
