#[derive(serde::Serialize, serde::Deserialize, annals_core::DomainEvent)]
enum AccountEvent {
    Opened {
        #[event(name = "owner")]
        owner: String,
    },
}

fn main() {}
