#[derive(serde::Serialize, serde::Deserialize, annals_core::DomainEvent)]
enum AccountEvent {
    #[event(upcasters = upcasters, crate = annals_core)]
    Opened,
}

fn upcasters() -> Vec<annals_core::upcast::Upcaster> {
    Vec::new()
}

fn main() {}
