#[derive(serde::Serialize, serde::Deserialize, annals_core::DomainEvent)]
enum AccountEvent {
    Opened,
    #[event(name = "Opened")]
    Reopened,
}

fn main() {}
