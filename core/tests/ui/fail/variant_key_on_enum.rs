#[derive(serde::Serialize, serde::Deserialize, annals_core::DomainEvent)]
#[event(name = "Account", version = 2)]
enum AccountEvent {
    Opened,
}

fn main() {}
