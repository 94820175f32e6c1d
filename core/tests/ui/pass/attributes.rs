//! Every documented attribute form compiles, with the serde settings the
//! derive allows.
use annals_core::upcast::Upcaster;
use annals_core::DomainEvent;
use serde::{Deserialize, Serialize};

fn no_upcasters() -> Vec<Upcaster> {
    Vec::new()
}

mod migrations {
    pub fn all() -> Vec<annals_core::upcast::Upcaster> {
        Vec::new()
    }
}

#[derive(Serialize, Deserialize, DomainEvent)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[event(upcasters = migrations::all, crate = ::annals_core)]
enum Everything {
    #[event(name = "Opened", version = 3)]
    Opened { owner: String },
    #[event(name = "Closed")]
    #[event(version = 2)]
    #[serde(rename = "shut", alias = "closed")]
    Closed,
    Moved(u8, u8),
    Renamed(String),
}

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "thing.happened", version = 2, upcasters = "no_upcasters", crate = "annals_core")]
struct Happened {
    at: u64,
}

#[derive(Serialize, Deserialize, DomainEvent)]
struct Ping;

fn main() {
    assert_eq!(Everything::known_types()[1], ("Closed", 2));
    assert_eq!(Everything::Closed.event_type(), "Closed");
    assert_eq!(Happened { at: 1 }.event_type(), "thing.happened");
    assert_eq!(Ping.encode().map(|p| p.into_string()), Ok("null".to_owned()));
}
