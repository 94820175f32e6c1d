#[derive(serde::Serialize, serde::Deserialize, annals_core::DomainEvent)]
enum Nothing {}

fn main() {}
