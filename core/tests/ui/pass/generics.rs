//! Generic event types get an impl for each parameter serde can handle.
use annals_core::DomainEvent;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
enum Changed<T>
where
    T: Clone,
{
    Set { value: T },
    Cleared,
}

#[derive(Serialize, Deserialize, DomainEvent)]
#[serde(bound = "T: Serialize + DeserializeOwned")]
struct Wrapped<T: Send, const N: usize> {
    items: Vec<T>,
}

fn stored_names<E: DomainEvent>() -> &'static [(&'static str, u32)] {
    E::known_types()
}

fn main() {
    assert_eq!(stored_names::<Changed<u8>>(), &[("Set", 1), ("Cleared", 1)]);
    assert_eq!(stored_names::<Wrapped<String, 3>>(), &[("Wrapped", 1)]);
}
