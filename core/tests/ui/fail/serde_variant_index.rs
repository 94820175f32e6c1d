#[derive(serde::Serialize, serde::Deserialize, annals_core::DomainEvent)]
enum AccountEvent {
    #[serde(skip)]
    Draft,
    Opened,
    #[serde(other)]
    Unknown,
}

fn main() {}
