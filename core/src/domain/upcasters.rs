//! A domain event type's own upcasters: a registry of them, and each type's
//! registry built once.
//!
//! A registry is checked when it is built, which is not free; decoding an
//! old event must not pay for it every time. The registry of a type is
//! built on first use and kept for the life of the process (one per event
//! type: a bounded set), keyed by the type's `TypeId` because a generic
//! function cannot own a `static` of its own per type.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};

use crate::domain::DomainEvent;
use crate::upcaster::error::RegistryError;
use crate::upcaster::registry::{Upcasters, UpcastersBuilder};

type Built = Result<Option<&'static Upcasters>, RegistryError>;

fn registries() -> &'static RwLock<HashMap<TypeId, Built>> {
    static REGISTRIES: OnceLock<RwLock<HashMap<TypeId, Built>>> = OnceLock::new();
    REGISTRIES.get_or_init(|| RwLock::new(HashMap::new()))
}

/// The checked registry of `E`'s own upcasters: `None` when `E` declares
/// none, an error when they do not form valid chains.
pub(crate) fn registry_of<E: DomainEvent>() -> Built {
    let key = TypeId::of::<E>();
    // A poisoned lock only means another thread panicked while inserting;
    // the map holds whole entries, so it is still usable.
    if let Some(built) = registries()
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&key)
    {
        return built.clone();
    }
    let upcasters = E::upcasters();
    let built: Built = if upcasters.is_empty() {
        Ok(None)
    } else {
        Upcasters::builder()
            .events::<E>()
            .build()
            .map(|registry| Some(&*Box::leak(Box::new(registry))))
    };
    let mut map = registries()
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // Another thread may have built it meanwhile: keep the first.
    map.entry(key).or_insert(built).clone()
}

impl UpcastersBuilder {
    /// Declares every type of a domain event as current, and adds the
    /// upcasters registered with it ([`DomainEvent::upcasters`]).
    pub fn events<E: DomainEvent>(mut self) -> Self {
        for (name, version) in E::known_types() {
            self.current.push(((*name).to_owned(), *version));
        }
        self.steps.extend(E::upcasters());
        self
    }
}

impl Upcasters {
    /// The registry for one domain event type and the upcasters registered
    /// with it.
    pub fn for_events<E: DomainEvent>() -> Result<Self, RegistryError> {
        Upcasters::builder().events::<E>().build()
    }
}
