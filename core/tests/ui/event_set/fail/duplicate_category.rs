use annals_core::testkit::bank::AccountEvent;

#[derive(serde::Serialize, serde::Deserialize, annals_core::DomainEvent)]
enum OrderEvent {
    OrderPlaced,
}

#[derive(serde::Serialize, serde::Deserialize, annals_core::DomainEvent)]
enum AuditEvent {
    NoteTaken,
}

#[derive(annals_core::EventSet)]
enum ByName {
    #[events(category = "order")]
    Order(OrderEvent),
    #[events(category = "order")]
    Audit(AuditEvent),
}

#[derive(annals_core::EventSet)]
enum ByAggregate {
    #[events(aggregate = annals_core::testkit::bank::Account)]
    Account(AccountEvent),
    #[events(aggregate = annals_core::testkit::bank::Account)]
    Audit(AuditEvent),
}

fn main() {}
