//! A saga instance's stream: the saga's own state events, and the events
//! the runner keeps there (deadlines set, fired and cancelled, the end).
//!
//! The instance is an aggregate like any other (category: the saga's
//! name), so its stream replays, upcasts and snapshots as any aggregate's
//! does.

use std::any::TypeId;
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::{OnceLock, RwLock};

use annals_core::codec::{decode_payload, unknown_event_type};
use annals_core::upcast::Upcaster;
use annals_core::{Aggregate, DecodeError, DomainEvent, Payload, PayloadError, Timestamp};
use serde::{Deserialize, Serialize};

use crate::saga::{Saga, SagaState};

/// The stored names of the runner's own events in an instance stream.
pub(crate) const DEADLINE_SET: &str = "SagaDeadlineSet";
pub(crate) const DEADLINE_FIRED: &str = "SagaDeadlineFired";
pub(crate) const DEADLINE_CANCELLED: &str = "SagaDeadlineCancelled";
pub(crate) const FINISHED: &str = "SagaFinished";
const OWN: [&str; 4] = [DEADLINE_SET, DEADLINE_FIRED, DEADLINE_CANCELLED, FINISHED];

/// An event of a saga instance's stream.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum InstanceEvent<E> {
    /// One of the saga's own state events.
    State(E),
    /// A deadline was set: the saga is woken with it at `due`.
    DeadlineSet {
        /// The deadline's name, unique within the instance.
        name: String,
        /// When it is due.
        due: Timestamp,
    },
    /// A deadline fired and the saga handled it.
    DeadlineFired {
        /// The deadline's name.
        name: String,
    },
    /// A deadline was cancelled before it was due.
    DeadlineCancelled {
        /// The deadline's name.
        name: String,
    },
    /// The instance finished: it ignores later events, and its deadlines
    /// are cancelled.
    Finished,
}

#[derive(Serialize, Deserialize)]
struct Named {
    name: String,
}

#[derive(Serialize, Deserialize)]
struct Due {
    name: String,
    due: i64,
}

impl<E: DomainEvent> DomainEvent for InstanceEvent<E> {
    fn event_type(&self) -> &'static str {
        match self {
            InstanceEvent::State(event) => event.event_type(),
            InstanceEvent::DeadlineSet { .. } => DEADLINE_SET,
            InstanceEvent::DeadlineFired { .. } => DEADLINE_FIRED,
            InstanceEvent::DeadlineCancelled { .. } => DEADLINE_CANCELLED,
            InstanceEvent::Finished => FINISHED,
        }
    }

    fn schema_version(&self) -> u32 {
        match self {
            InstanceEvent::State(event) => event.schema_version(),
            _ => 1,
        }
    }

    fn encode(&self) -> Result<Payload, PayloadError> {
        match self {
            InstanceEvent::State(event) => event.encode(),
            InstanceEvent::DeadlineSet { name, due } => Payload::encode(&Due {
                name: name.clone(),
                due: due.as_unix_micros(),
            }),
            InstanceEvent::DeadlineFired { name } | InstanceEvent::DeadlineCancelled { name } => {
                Payload::encode(&Named { name: name.clone() })
            }
            InstanceEvent::Finished => Payload::from_json("{}"),
        }
    }

    fn decode(
        event_type: &str,
        schema_version: u32,
        payload: &Payload,
    ) -> Result<Self, DecodeError> {
        let own = |decoded: Result<Self, DecodeError>| {
            if schema_version == 1 {
                decoded
            } else {
                Err(
                    annals_core::codec::check_schema_version(event_type, schema_version, 1)
                        .err()
                        .unwrap_or_else(|| unknown_event_type(event_type)),
                )
            }
        };
        match event_type {
            DEADLINE_SET => own(decode_payload::<Due>(event_type, 1, payload).map(|d| {
                InstanceEvent::DeadlineSet {
                    name: d.name,
                    due: Timestamp::from_unix_micros(d.due),
                }
            })),
            DEADLINE_FIRED => own(decode_payload::<Named>(event_type, 1, payload)
                .map(|n| InstanceEvent::DeadlineFired { name: n.name })),
            DEADLINE_CANCELLED => own(decode_payload::<Named>(event_type, 1, payload)
                .map(|n| InstanceEvent::DeadlineCancelled { name: n.name })),
            FINISHED => own(Ok(InstanceEvent::Finished)),
            _ => E::decode(event_type, schema_version, payload).map(InstanceEvent::State),
        }
    }

    fn known_types() -> &'static [(&'static str, u32)] {
        known_types_with_own::<E>()
    }

    fn upcasters() -> Vec<Upcaster> {
        E::upcasters()
    }
}

/// `E`'s stored names and the runner's own, built once per type (a
/// generic function cannot own a `static` per type, so they are kept by
/// `TypeId`, a bounded set).
fn known_types_with_own<E: DomainEvent>() -> &'static [(&'static str, u32)] {
    type Known = &'static [(&'static str, u32)];
    static KNOWN: OnceLock<RwLock<HashMap<TypeId, Known>>> = OnceLock::new();
    let map = KNOWN.get_or_init(|| RwLock::new(HashMap::new()));
    let key = TypeId::of::<E>();
    // A poisoned lock holds whole entries only: still usable.
    if let Some(known) = map
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&key)
    {
        return known;
    }
    let mut all: Vec<(&'static str, u32)> = E::known_types().to_vec();
    all.extend(OWN.iter().map(|name| (*name, 1)));
    let leaked: Known = Box::leak(all.into_boxed_slice());
    let mut map = map
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    map.entry(key).or_insert(leaked)
}

/// A saga instance as its stream makes it: the saga's state, the pending
/// deadlines, and whether it finished.
///
/// It is an [`Aggregate`] of the saga's category, so a repository loads it
/// like any other (the transfer example reads its instances that way), and
/// snapshots it when the saga's state is `Serialize` and
/// `DeserializeOwned`. The runner's reactions replay an instance's stream,
/// which stays short: a handful of events per instance.
#[derive(Serialize, Deserialize)]
#[serde(bound(
    serialize = "G::State: Serialize",
    deserialize = "G::State: serde::de::DeserializeOwned"
))]
pub struct Instance<G: Saga> {
    /// The saga's own state.
    pub state: G::State,
    /// The deadlines set and neither fired nor cancelled, by name.
    pub deadlines: BTreeMap<String, Timestamp>,
    /// Whether the instance finished.
    pub finished: bool,
}

impl<G: Saga> Default for Instance<G> {
    fn default() -> Self {
        Instance {
            state: G::State::default(),
            deadlines: BTreeMap::new(),
            finished: false,
        }
    }
}

impl<G: Saga> Clone for Instance<G> {
    fn clone(&self) -> Self {
        Instance {
            state: self.state.clone(),
            deadlines: self.deadlines.clone(),
            finished: self.finished,
        }
    }
}

impl<G: Saga> Aggregate for Instance<G> {
    const CATEGORY: &'static str = G::NAME;
    type Event = InstanceEvent<<G::State as SagaState>::Event>;
    /// The events a reaction recorded, to append as they are.
    type Command = Vec<Self::Event>;
    type Error = Infallible;

    fn apply(&mut self, event: &Self::Event) {
        match event {
            InstanceEvent::State(event) => self.state.apply(event),
            InstanceEvent::DeadlineSet { name, due } => {
                self.deadlines.insert(name.clone(), *due);
            }
            InstanceEvent::DeadlineFired { name } | InstanceEvent::DeadlineCancelled { name } => {
                self.deadlines.remove(name);
            }
            InstanceEvent::Finished => {
                self.finished = true;
                self.deadlines.clear();
            }
        }
    }

    fn handle(&self, recorded: Self::Command) -> Result<Vec<Self::Event>, Infallible> {
        Ok(recorded)
    }
}
