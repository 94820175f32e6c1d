#[derive(serde::Serialize, serde::Deserialize, annals_core::DomainEvent)]
enum AccountEvent {
    #[event(version = 0)]
    Opened,
}

fn main() {}
