// Two variants whose stored-name constants would both be `PAID`.
#[derive(serde::Serialize, serde::Deserialize, annals_core::DomainEvent)]
#[allow(non_camel_case_types)]
enum OrderEvent {
    Paid,
    #[event(name = "PaidAgain")]
    PAID,
}

fn main() {}
