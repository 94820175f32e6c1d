#[derive(serde::Serialize, serde::Deserialize, annals_core::DomainEvent)]
enum AccountEvent {
    #[event(name = "")]
    Opened,
    #[event(name = " Closed")]
    Closed,
    #[event(name = "Frozen\n")]
    Frozen,
}

fn main() {}
