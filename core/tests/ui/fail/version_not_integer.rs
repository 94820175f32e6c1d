#[derive(serde::Serialize, serde::Deserialize, annals_core::DomainEvent)]
enum AccountEvent {
    #[event(version = "2")]
    Opened,
    #[event(version = 1.5)]
    Closed,
    #[event(version = 4294967296)]
    Frozen,
}

fn main() {}
