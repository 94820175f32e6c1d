#[derive(serde::Serialize, serde::Deserialize, annals_core::DomainEvent)]
enum AccountEvent {
    #[event(nmae = "Opened")]
    Opened,
    #[event(version = 2, version = 3)]
    Closed,
}

fn main() {}
