//! Schema evolution: upcasters bring old stored events up to date as they
//! are read.
//!
//! Stored events are never rewritten. Each upcaster is one step on the
//! stored form of an event — `(event_type, schema_version, JSON payload,
//! metadata)` in, one or more events out — that reshapes the JSON, renames
//! the type, or splits the event in several. An event read from the store
//! goes through steps until its `(type, version)` is current.
//!
//! The registry is checked when it is built, so a broken chain fails at
//! start-up rather than when an old event is first read: every version below
//! a type's current one must have exactly one step, every step must lead to a
//! current version, and no chain may loop.
//!
//! ```
//! use annals_core::{Upcaster, Upcasters};
//!
//! let upcasters = Upcasters::builder()
//!     .current("Deposited", 2)
//!     // Version 1 kept the amount in whole euros; version 2 counts cents.
//!     .upcaster(Upcaster::reshape("Deposited", 1, |payload| {
//!         let euros = payload["euros"].as_u64().ok_or("euros is not a number")?;
//!         *payload = serde_json::json!({ "cents": euros * 100 });
//!         Ok::<(), &str>(())
//!     }))
//!     .build()?;
//! # let _ = upcasters;
//! # Ok::<(), annals_core::RegistryError>(())
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::append::{AppendOutcome, AppendRequest};
use crate::domain::DomainEvent;
use crate::error::{AppendError, ReadError};
use crate::event::{EventId, Metadata, Position, RecordedEvent};
use crate::id::{EventType, StreamId};
use crate::payload::Payload;
use crate::store::{EventStore, HeadWatch, ReadAll, ReadStream};

/// An event in its stored form, as an upcaster sees and changes it.
#[derive(Debug, Clone, PartialEq)]
pub struct UpcastEvent {
    /// The stored type name.
    pub event_type: String,
    /// The payload's schema version.
    pub schema_version: u32,
    /// The payload, parsed.
    pub payload: serde_json::Value,
    /// The event's metadata.
    pub metadata: Metadata,
}

type Step = dyn Fn(UpcastEvent) -> Result<Vec<UpcastEvent>, String> + Send + Sync;

/// One step of an upcaster chain: events of `(event_type, from_version)` in,
/// events of the declared `(type, version)` pairs out.
#[derive(Clone)]
pub struct Upcaster {
    event_type: String,
    from_version: u32,
    produces: Vec<(String, u32)>,
    step: Arc<Step>,
}

impl fmt::Debug for Upcaster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upcaster")
            .field("event_type", &self.event_type)
            .field("from_version", &self.from_version)
            .field("produces", &self.produces)
            .finish()
    }
}

impl Upcaster {
    /// Reshapes the JSON of `event_type` at `from_version` into version
    /// `from_version + 1` of the same type.
    pub fn reshape<F, E>(event_type: &str, from_version: u32, reshape: F) -> Self
    where
        F: Fn(&mut serde_json::Value) -> Result<(), E> + Send + Sync + 'static,
        E: fmt::Display,
    {
        let next = from_version.saturating_add(1);
        Upcaster::new(
            event_type,
            from_version,
            &[(event_type, next)],
            move |mut event| {
                reshape(&mut event.payload).map_err(|e| e.to_string())?;
                event.schema_version = next;
                Ok::<_, String>(vec![event])
            },
        )
    }

    /// Renames `event_type` at `from_version` to `new_type`, keeping the
    /// version and the payload.
    pub fn rename(event_type: &str, from_version: u32, new_type: &str) -> Self {
        let renamed = new_type.to_owned();
        Upcaster::new(
            event_type,
            from_version,
            &[(new_type, from_version)],
            move |mut event| {
                event.event_type.clone_from(&renamed);
                Ok::<_, String>(vec![event])
            },
        )
    }

    /// Any step: `produces` declares every `(type, version)` the step may
    /// return, so that the registry can check the chains at build time.
    /// Returning several events splits one stored event into several; they
    /// keep its stream, version and position.
    pub fn new<F, E>(event_type: &str, from_version: u32, produces: &[(&str, u32)], step: F) -> Self
    where
        F: Fn(UpcastEvent) -> Result<Vec<UpcastEvent>, E> + Send + Sync + 'static,
        E: fmt::Display,
    {
        Upcaster {
            event_type: event_type.to_owned(),
            from_version,
            produces: produces
                .iter()
                .map(|(t, v)| ((*t).to_owned(), *v))
                .collect(),
            step: Arc::new(move |event| step(event).map_err(|e| e.to_string())),
        }
    }

    /// The type this step reads.
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// The version this step reads.
    pub fn from_version(&self) -> u32 {
        self.from_version
    }
}

/// Why an upcaster registry was refused at build time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// Two upcasters read the same type and version.
    #[error("two upcasters read event type {event_type:?} version {version}")]
    DuplicateStep {
        /// The type.
        event_type: String,
        /// The version.
        version: u32,
    },
    /// A version below the current one has no upcaster, so stored events of
    /// that version could never be read.
    #[error("event type {event_type:?} is at version {current}, but no upcaster reads version {version}")]
    MissingStep {
        /// The type.
        event_type: String,
        /// The version with no step.
        version: u32,
        /// The type's current version.
        current: u32,
    },
    /// An upcaster produces a type and version that is neither current nor
    /// read by another upcaster: a dead end.
    #[error("the upcaster for {from_type:?} version {from_version} produces {event_type:?} version {version}, which is not current and has no upcaster")]
    DeadEnd {
        /// The step's input type.
        from_type: String,
        /// The step's input version.
        from_version: u32,
        /// The type it produces.
        event_type: String,
        /// The version it produces.
        version: u32,
    },
    /// An upcaster reads a version that is current or newer.
    #[error(
        "an upcaster reads event type {event_type:?} version {version}, but {current} is current"
    )]
    NotOlder {
        /// The type.
        event_type: String,
        /// The version it reads.
        version: u32,
        /// The current version.
        current: u32,
    },
    /// Following the upcasters from this type and version comes back to it.
    #[error("the upcasters for event type {event_type:?} version {version} form a cycle")]
    Cycle {
        /// A type on the cycle.
        event_type: String,
        /// Its version.
        version: u32,
    },
    /// Two event types claim different current versions for one name.
    #[error("event type {event_type:?} is declared current at versions {first} and {second}")]
    ConflictingCurrent {
        /// The type.
        event_type: String,
        /// One declared version.
        first: u32,
        /// The other.
        second: u32,
    },
}

/// Why a stored event could not be brought up to date.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpcastError {
    /// The stored payload is not JSON.
    #[error("payload is not JSON: {reason}")]
    Payload {
        /// What the parser said (without quoting the payload).
        reason: String,
    },
    /// The upcaster itself failed.
    #[error("upcaster for {event_type:?} version {version} failed: {reason}")]
    Step {
        /// The type it read.
        event_type: String,
        /// The version it read.
        version: u32,
        /// What the upcaster reported.
        reason: String,
    },
    /// An upcaster returned a type or version it did not declare.
    #[error("upcaster for {event_type:?} version {version} returned {produced_type:?} version {produced_version}, which it does not declare")]
    Undeclared {
        /// The type it read.
        event_type: String,
        /// The version it read.
        version: u32,
        /// The type it returned.
        produced_type: String,
        /// The version it returned.
        produced_version: u32,
    },
    /// The event is stored under an old name (one the upcasters rename or
    /// reshape) at a version no upcaster reads: it was written by code this
    /// registry does not know. Deploy that code's upcasters; never skip it.
    #[error(
        "event type {event_type:?} version {version} is an old name at a version no upcaster reads"
    )]
    NoPath {
        /// The stored type name.
        event_type: String,
        /// The stored schema version.
        version: u32,
    },
    /// The upcast payload cannot be stored as JSON (a NUL or deep nesting),
    /// or the upcast type name is invalid.
    #[error("upcast event is invalid: {reason}")]
    Invalid {
        /// What was wrong.
        reason: String,
    },
}

/// Builds an [`Upcasters`] registry.
#[derive(Debug, Default)]
pub struct UpcastersBuilder {
    current: Vec<(String, u32)>,
    steps: Vec<Upcaster>,
}

impl UpcastersBuilder {
    /// Declares the current version of a type name.
    pub fn current(mut self, event_type: &str, version: u32) -> Self {
        self.current.push((event_type.to_owned(), version));
        self
    }

    /// Declares every type of a domain event as current, and adds the
    /// upcasters registered with it ([`DomainEvent::upcasters`]).
    pub fn events<E: DomainEvent>(mut self) -> Self {
        for (name, version) in E::known_types() {
            self.current.push(((*name).to_owned(), *version));
        }
        self.steps.extend(E::upcasters());
        self
    }

    /// Adds one upcaster.
    pub fn upcaster(mut self, upcaster: Upcaster) -> Self {
        self.steps.push(upcaster);
        self
    }

    /// Checks the chains and builds the registry.
    pub fn build(self) -> Result<Upcasters, RegistryError> {
        let mut current: BTreeMap<String, u32> = BTreeMap::new();
        for (name, version) in self.current {
            match current.insert(name.clone(), version) {
                Some(first) if first != version => {
                    return Err(RegistryError::ConflictingCurrent {
                        event_type: name,
                        first,
                        second: version,
                    })
                }
                _ => {}
            }
        }
        let mut steps: HashMap<String, BTreeMap<u32, Upcaster>> = HashMap::new();
        for step in self.steps {
            if let Some(&now) = current.get(&step.event_type) {
                if step.from_version >= now {
                    return Err(RegistryError::NotOlder {
                        event_type: step.event_type,
                        version: step.from_version,
                        current: now,
                    });
                }
            }
            let by_version = steps.entry(step.event_type.clone()).or_default();
            if by_version.contains_key(&step.from_version) {
                return Err(RegistryError::DuplicateStep {
                    event_type: step.event_type,
                    version: step.from_version,
                });
            }
            by_version.insert(step.from_version, step);
        }
        for (name, &now) in &current {
            for version in first_version(name, &steps)..now {
                let has_step = steps.get(name).is_some_and(|s| s.contains_key(&version));
                if !has_step {
                    return Err(RegistryError::MissingStep {
                        event_type: name.clone(),
                        version,
                        current: now,
                    });
                }
            }
        }
        let registry = Upcasters {
            current,
            steps: Arc::new(steps),
        };
        registry.check_paths()?;
        Ok(registry)
    }
}

/// The oldest version of `name` that stored events can have, as far as the
/// steps tell: 1, unless steps of other types produce `name` only from some
/// version on and `name` has no step of its own below that version (the
/// type was born under that name by a rename, such as `AccountCreated` v1
/// becoming `Opened` v2 in one step). Every version from there up to the
/// current one needs a step.
fn first_version(name: &str, steps: &HashMap<String, BTreeMap<u32, Upcaster>>) -> u32 {
    let produced_from = steps
        .iter()
        .filter(|(other, _)| other.as_str() != name)
        .flat_map(|(_, by_version)| by_version.values())
        .flat_map(|step| step.produces.iter())
        .filter(|(t, _)| t == name)
        .map(|(_, v)| *v)
        .min();
    let own_lowest = steps
        .get(name)
        .and_then(|by_version| by_version.keys().next().copied());
    match (produced_from, own_lowest) {
        (Some(born), Some(own)) if own < born => 1,
        (Some(born), _) => born,
        (None, _) => 1,
    }
}

/// The id of part `part` of a split event: the first part keeps the stored
/// id; each other part gets an id derived from it, the same on every read,
/// so that readers that de-duplicate by id, or use it as a causation id,
/// tell the parts apart.
fn part_id(stored: EventId, part: usize) -> EventId {
    if part == 0 {
        return stored;
    }
    let mut bytes = *stored.as_uuid().as_bytes();
    let part = u64::try_from(part).unwrap_or(u64::MAX).to_be_bytes();
    for (byte, p) in bytes[8..].iter_mut().zip(part) {
        *byte ^= p;
    }
    // A version-8 (custom) UUID: never equal to the stored v7 or any other
    // id this crate makes, and never nil.
    EventId::from_uuid(uuid::Builder::from_custom_bytes(bytes).into_uuid()).unwrap_or(stored)
}

/// A checked set of upcasters, cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Upcasters {
    current: BTreeMap<String, u32>,
    steps: Arc<HashMap<String, BTreeMap<u32, Upcaster>>>,
}

/// The most steps one stored event may go through; the build-time cycle
/// check makes this a guard, not a limit anyone reaches.
const MAX_STEPS: usize = 256;

impl Upcasters {
    /// Starts a registry.
    pub fn builder() -> UpcastersBuilder {
        UpcastersBuilder::default()
    }

    /// The registry for one domain event type and the upcasters registered
    /// with it.
    pub fn for_events<E: DomainEvent>() -> Result<Self, RegistryError> {
        Upcasters::builder().events::<E>().build()
    }

    fn step(&self, event_type: &str, version: u32) -> Option<&Upcaster> {
        self.steps.get(event_type)?.get(&version)
    }

    /// Every step's outputs lead, without cycles, to a current version.
    fn check_paths(&self) -> Result<(), RegistryError> {
        // 0 = unvisited, 1 = on the current path, 2 = known good.
        let mut state: HashMap<(&str, u32), u8> = HashMap::new();
        for (name, by_version) in self.steps.iter() {
            for &version in by_version.keys() {
                self.visit(name, version, &mut state)?;
            }
        }
        Ok(())
    }

    fn visit<'a>(
        &'a self,
        name: &'a str,
        version: u32,
        state: &mut HashMap<(&'a str, u32), u8>,
    ) -> Result<(), RegistryError> {
        match state.get(&(name, version)) {
            Some(2) => return Ok(()),
            Some(1) => {
                return Err(RegistryError::Cycle {
                    event_type: name.to_owned(),
                    version,
                })
            }
            _ => {}
        }
        let Some(step) = self.step(name, version) else {
            return Ok(());
        };
        state.insert((name, version), 1);
        for (out_type, out_version) in &step.produces {
            let is_current = self.current.get(out_type) == Some(out_version);
            if !is_current && self.step(out_type, *out_version).is_none() {
                return Err(RegistryError::DeadEnd {
                    from_type: name.to_owned(),
                    from_version: version,
                    event_type: out_type.clone(),
                    version: *out_version,
                });
            }
            self.visit(out_type, *out_version, state)?;
        }
        state.insert((name, version), 2);
        Ok(())
    }

    /// Whether a stored event needs upcasting.
    pub fn needs_upcast(&self, event_type: &str, schema_version: u32) -> bool {
        !self.steps.is_empty() && self.step(event_type, schema_version).is_some()
    }

    /// Brings one stored event up to date, appending the result (one event,
    /// or several for a split) to `out`. Events with no step pass unchanged;
    /// decoding reports unknown types and future versions.
    pub fn upcast_into(
        &self,
        event: RecordedEvent,
        out: &mut Vec<RecordedEvent>,
    ) -> Result<(), UpcastError> {
        if !self.needs_upcast(event.event_type.as_str(), event.schema_version) {
            let name = event.event_type.as_str();
            if !self.current.contains_key(name) && self.steps.contains_key(name) {
                // An old name (it has steps, it is not current) at a version
                // no step reads: written by code this registry does not know.
                return Err(UpcastError::NoPath {
                    event_type: name.to_owned(),
                    version: event.schema_version,
                });
            }
            out.push(event);
            return Ok(());
        }
        let payload = event.payload.to_value().map_err(|e| UpcastError::Payload {
            reason: crate::payload::redacted_message(&e),
        })?;
        let start = UpcastEvent {
            event_type: event.event_type.as_str().to_owned(),
            schema_version: event.schema_version,
            payload,
            metadata: event.metadata.clone(),
        };
        let mut pending = vec![(start, 0usize)];
        let mut done = Vec::new();
        // Depth-first, so a split's outputs keep their order.
        while let Some((item, depth)) = pending.pop() {
            let Some(step) = self.step(&item.event_type, item.schema_version) else {
                done.push(item);
                continue;
            };
            if depth >= MAX_STEPS {
                return Err(UpcastError::Step {
                    event_type: item.event_type,
                    version: item.schema_version,
                    reason: format!("more than {MAX_STEPS} steps"),
                });
            }
            let (from_type, from_version) = (item.event_type.clone(), item.schema_version);
            // A step is application code: one that panics on an unexpected
            // payload fails this read with a typed error, not the process.
            let run = std::panic::AssertUnwindSafe(|| (step.step)(item));
            let outputs = std::panic::catch_unwind(run)
                .unwrap_or_else(|_| Err("the upcaster panicked".to_owned()))
                .map_err(|reason| UpcastError::Step {
                    event_type: from_type.clone(),
                    version: from_version,
                    reason,
                })?;
            for output in outputs.into_iter().rev() {
                let declared = step
                    .produces
                    .iter()
                    .any(|(t, v)| *t == output.event_type && *v == output.schema_version);
                if !declared {
                    return Err(UpcastError::Undeclared {
                        event_type: from_type,
                        version: from_version,
                        produced_type: output.event_type,
                        produced_version: output.schema_version,
                    });
                }
                pending.push((output, depth + 1));
            }
        }
        for (part, item) in done.into_iter().enumerate() {
            let invalid = |reason: String| UpcastError::Invalid { reason };
            let payload = Payload::encode(&item.payload).map_err(|e| invalid(e.to_string()))?;
            let event_type = EventType::new(item.event_type).map_err(|e| invalid(e.to_string()))?;
            out.push(RecordedEvent::from_parts(
                event.position,
                event.stream_id.clone(),
                event.version,
                part_id(event.event_id, part),
                event_type,
                item.schema_version,
                payload,
                item.metadata,
                event.recorded_at,
            ));
        }
        Ok(())
    }

    /// Brings a page of stored events up to date.
    pub fn upcast_page(&self, page: Vec<RecordedEvent>) -> Result<Vec<RecordedEvent>, ReadError> {
        if self.steps.is_empty() {
            return Ok(page);
        }
        let mut out = Vec::with_capacity(page.len());
        for event in page {
            let (position, stream, version) =
                (event.position, event.stream_id.clone(), event.version);
            self.upcast_into(event, &mut out)
                .map_err(|source| ReadError::Upcast {
                    stream,
                    version,
                    position,
                    source,
                })?;
        }
        Ok(out)
    }

    /// The stored type names whose events upcast into any of `types`,
    /// including `types` themselves: what a type filter must ask the store for.
    pub fn stored_names_for(&self, types: &[EventType]) -> Vec<EventType> {
        let mut wanted: BTreeSet<String> = types.iter().map(|t| t.as_str().to_owned()).collect();
        // Grow the set with every step that produces a wanted name, until stable.
        loop {
            let before = wanted.len();
            for (name, by_version) in self.steps.iter() {
                let feeds = by_version
                    .values()
                    .flat_map(|s| s.produces.iter())
                    .any(|(t, _)| wanted.contains(t));
                if feeds {
                    wanted.insert(name.clone());
                }
            }
            if wanted.len() == before {
                break;
            }
        }
        wanted
            .into_iter()
            .filter_map(|n| EventType::new(n).ok())
            .collect()
    }
}

/// A store whose reads go through an upcaster registry; writes pass through.
///
/// Made with [`crate::EventStoreExt::with_upcasters`]. Filtering the global
/// log by event type also finds the old names that upcast into the asked-for
/// types. A split event's parts share the stored event's stream, version and
/// position, so a page may hold more events than its limit.
#[derive(Clone)]
pub struct UpcastingStore<S> {
    inner: S,
    upcasters: Upcasters,
}

impl<S> UpcastingStore<S> {
    /// Wraps a store.
    pub fn new(inner: S, upcasters: Upcasters) -> Self {
        UpcastingStore { inner, upcasters }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

#[async_trait]
impl<S: EventStore> EventStore for UpcastingStore<S> {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, AppendError> {
        self.inner.append(request).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        read: ReadStream,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        let page = self.inner.read_stream(stream, read).await?;
        self.upcasters.upcast_page(page)
    }

    async fn read_all(&self, read: ReadAll) -> Result<Vec<RecordedEvent>, ReadError> {
        let Some(wanted) = read.event_type_filter().map(<[EventType]>::to_vec) else {
            return self.upcasters.upcast_page(self.inner.read_all(read).await?);
        };
        if read.max_count() == 0 {
            return Ok(Vec::new());
        }
        // Old names are asked for only to be upcast; what they become may
        // not be wanted (a split's other parts). Read on until a page holds
        // something wanted or the log ends: an empty page must mean "nothing
        // more", or a follower would stop early.
        let mut read = read.event_types(self.upcasters.stored_names_for(&wanted));
        loop {
            let stored = self.inner.read_all(read.clone()).await?;
            let Some(last) = stored.last().map(|e| e.position) else {
                return Ok(Vec::new());
            };
            let page: Vec<RecordedEvent> = self
                .upcasters
                .upcast_page(stored)?
                .into_iter()
                .filter(|e| wanted.contains(&e.event_type))
                .collect();
            if !page.is_empty() {
                return Ok(page);
            }
            read = read.after_position(last);
        }
    }

    async fn head(&self) -> Result<Position, ReadError> {
        self.inner.head().await
    }

    fn watch_head(&self) -> HeadWatch {
        self.inner.watch_head()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EventStoreExt, ExpectedVersion, InMemoryStore, NewEvent};
    use serde_json::json;
    use std::error::Error;

    fn recorded(event_type: &str, version: u32, payload: &str) -> RecordedEvent {
        NewEvent::new(
            event_type,
            version,
            Payload::from_json(payload).expect("valid"),
        )
        .expect("valid")
        .into_recorded(
            StreamId::new("account-1").expect("valid"),
            7,
            Position(42),
            crate::Timestamp::now(),
        )
    }

    /// AccountOpened v1 {"name"} --rename--> Opened v1 --reshape--> Opened v2 {"owner"}
    /// --split--> Opened v3 {"owner"} + Named v1 {"name"}.
    fn bank_chain() -> UpcastersBuilder {
        Upcasters::builder()
            .current("Opened", 3)
            .current("Named", 1)
            .upcaster(Upcaster::rename("AccountOpened", 1, "Opened"))
            .upcaster(Upcaster::reshape("Opened", 1, |p| {
                let name = p["name"].take();
                *p = json!({ "owner": name });
                Ok::<_, String>(())
            }))
            .upcaster(Upcaster::new(
                "Opened",
                2,
                &[("Opened", 3), ("Named", 1)],
                |e: UpcastEvent| {
                    let owner = e.payload["owner"].clone();
                    let opened = UpcastEvent {
                        schema_version: 3,
                        payload: json!({ "owner": owner }),
                        ..e.clone()
                    };
                    let named = UpcastEvent {
                        event_type: "Named".into(),
                        schema_version: 1,
                        payload: json!({ "name": owner }),
                        ..e
                    };
                    Ok::<_, String>(vec![opened, named])
                },
            ))
    }

    #[test]
    fn chain_with_rename_reshape_and_split_reaches_current_versions() -> Result<(), Box<dyn Error>>
    {
        let upcasters = bank_chain().build()?;
        let mut out = Vec::new();
        upcasters.upcast_into(recorded("AccountOpened", 1, r#"{"name":"ada"}"#), &mut out)?;
        let shapes: Vec<(&str, u32, String)> = out
            .iter()
            .map(|e| {
                (
                    e.event_type.as_str(),
                    e.schema_version,
                    e.payload.as_str().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            shapes,
            [
                ("Opened", 3, r#"{"owner":"ada"}"#.to_owned()),
                ("Named", 1, r#"{"name":"ada"}"#.to_owned())
            ]
        );
        assert!(out
            .iter()
            .all(|e| e.position == Position(42) && e.version == 7));
        Ok(())
    }

    #[test]
    fn current_events_pass_through_byte_for_byte() -> Result<(), Box<dyn Error>> {
        let upcasters = bank_chain().build()?;
        let text = r#"{ "owner" : "ada" }"#;
        let mut out = Vec::new();
        upcasters.upcast_into(recorded("Opened", 3, text), &mut out)?;
        assert_eq!(out[0].payload.as_str(), text);
        Ok(())
    }

    #[test]
    fn registry_fails_with_duplicate_step() {
        let err = Upcasters::builder()
            .current("A", 2)
            .upcaster(Upcaster::reshape("A", 1, |_| Ok::<_, String>(())))
            .upcaster(Upcaster::reshape("A", 1, |_| Ok::<_, String>(())))
            .build()
            .unwrap_err();
        assert_eq!(
            err,
            RegistryError::DuplicateStep {
                event_type: "A".into(),
                version: 1
            }
        );
    }

    #[test]
    fn registry_fails_with_missing_step() {
        let err = Upcasters::builder()
            .current("A", 3)
            .upcaster(Upcaster::reshape("A", 1, |_| Ok::<_, String>(())))
            .build()
            .unwrap_err();
        assert_eq!(
            err,
            RegistryError::MissingStep {
                event_type: "A".into(),
                version: 2,
                current: 3
            }
        );
    }

    #[test]
    fn registry_fails_with_dead_end() {
        let err = Upcasters::builder()
            .current("A", 1)
            .upcaster(Upcaster::rename("Old", 1, "Gone"))
            .build()
            .unwrap_err();
        assert_eq!(
            err,
            RegistryError::DeadEnd {
                from_type: "Old".into(),
                from_version: 1,
                event_type: "Gone".into(),
                version: 1
            }
        );
    }

    #[test]
    fn registry_fails_with_cycle() {
        let err = Upcasters::builder()
            .upcaster(Upcaster::rename("A", 1, "B"))
            .upcaster(Upcaster::rename("B", 1, "A"))
            .build()
            .unwrap_err();
        assert!(
            matches!(err, RegistryError::Cycle { version: 1, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn registry_fails_with_not_older() {
        let err = Upcasters::builder()
            .current("A", 2)
            .upcaster(Upcaster::reshape("A", 1, |_| Ok::<_, String>(())))
            .upcaster(Upcaster::reshape("A", 2, |_| Ok::<_, String>(())))
            .build()
            .unwrap_err();
        assert_eq!(
            err,
            RegistryError::NotOlder {
                event_type: "A".into(),
                version: 2,
                current: 2
            }
        );
    }

    #[test]
    fn registry_fails_with_conflicting_current() {
        let err = Upcasters::builder()
            .current("A", 2)
            .current("A", 3)
            .build()
            .unwrap_err();
        assert_eq!(
            err,
            RegistryError::ConflictingCurrent {
                event_type: "A".into(),
                first: 2,
                second: 3
            }
        );
    }

    #[test]
    fn upcast_fails_with_step_error_naming_type_and_version() -> Result<(), Box<dyn Error>> {
        let upcasters = Upcasters::builder()
            .current("A", 2)
            .upcaster(Upcaster::reshape("A", 1, |_| Err("amount missing")))
            .build()?;
        let err = upcasters
            .upcast_into(recorded("A", 1, "{}"), &mut Vec::new())
            .unwrap_err();
        assert_eq!(
            err,
            UpcastError::Step {
                event_type: "A".into(),
                version: 1,
                reason: "amount missing".into()
            }
        );
        Ok(())
    }

    #[test]
    fn upcast_fails_with_undeclared_output() -> Result<(), Box<dyn Error>> {
        let upcasters = Upcasters::builder()
            .current("A", 2)
            .upcaster(Upcaster::new("A", 1, &[("A", 2)], |mut e: UpcastEvent| {
                e.schema_version = 5;
                Ok::<_, String>(vec![e])
            }))
            .build()?;
        let err = upcasters
            .upcast_into(recorded("A", 1, "{}"), &mut Vec::new())
            .unwrap_err();
        assert!(
            matches!(
                err,
                UpcastError::Undeclared {
                    produced_version: 5,
                    ..
                }
            ),
            "{err:?}"
        );
        Ok(())
    }

    #[test]
    fn upcast_fails_with_payload_on_a_corrupt_row() -> Result<(), Box<dyn Error>> {
        let upcasters = bank_chain().build()?;
        let mut corrupt = recorded("AccountOpened", 1, "{}");
        corrupt.payload = Payload::from_stored("{not json".into());
        let err = upcasters.upcast_into(corrupt, &mut Vec::new()).unwrap_err();
        assert!(matches!(err, UpcastError::Payload { .. }), "{err:?}");
        Ok(())
    }

    #[test]
    fn registry_allows_a_type_born_by_a_rename_at_a_later_version() -> Result<(), Box<dyn Error>> {
        // "AccountCreated" v1 became "Opened" v2 in one step: no "Opened" v1
        // was ever stored, so none needs a step.
        let upcasters = Upcasters::builder()
            .current("Opened", 3)
            .upcaster(Upcaster::new(
                "AccountCreated",
                1,
                &[("Opened", 2)],
                |mut e: UpcastEvent| {
                    e.event_type = "Opened".into();
                    e.schema_version = 2;
                    Ok::<_, String>(vec![e])
                },
            ))
            .upcaster(Upcaster::reshape("Opened", 2, |_| Ok::<_, String>(())))
            .build()?;
        let mut out = Vec::new();
        upcasters.upcast_into(recorded("AccountCreated", 1, "{}"), &mut out)?;
        assert_eq!(
            (out[0].event_type.as_str(), out[0].schema_version),
            ("Opened", 3)
        );
        Ok(())
    }

    #[test]
    fn registry_fails_with_missing_step_when_a_renamed_type_has_older_steps_of_its_own() {
        // "Opened" has a step at v1, so it had a v1: v2 needs a step too,
        // even though a rename produces v3.
        let err = Upcasters::builder()
            .current("Opened", 3)
            .upcaster(Upcaster::rename("AccountCreated", 3, "Opened"))
            .upcaster(Upcaster::reshape("Opened", 1, |_| Ok::<_, String>(())))
            .build()
            .unwrap_err();
        assert_eq!(
            err,
            RegistryError::MissingStep {
                event_type: "Opened".into(),
                version: 2,
                current: 3
            }
        );
    }

    #[test]
    fn old_name_at_a_version_no_step_reads_fails_with_no_path() -> Result<(), Box<dyn Error>> {
        let upcasters = bank_chain().build()?;
        let err = upcasters
            .upcast_into(recorded("AccountOpened", 2, "{}"), &mut Vec::new())
            .unwrap_err();
        assert_eq!(
            err,
            UpcastError::NoPath {
                event_type: "AccountOpened".into(),
                version: 2
            }
        );
        Ok(())
    }

    #[test]
    fn panicking_upcaster_fails_with_step_error() -> Result<(), Box<dyn Error>> {
        let upcasters = bank_chain().build()?;
        // Indexing a JSON array by key panics inside the step.
        let err = upcasters
            .upcast_into(recorded("Opened", 1, "[1]"), &mut Vec::new())
            .unwrap_err();
        assert!(
            matches!(&err, UpcastError::Step { event_type, version: 1, reason } if event_type == "Opened" && reason.contains("panicked")),
            "{err:?}"
        );
        Ok(())
    }

    #[test]
    fn split_parts_have_distinct_ids_the_same_on_every_read() -> Result<(), Box<dyn Error>> {
        let upcasters = bank_chain().build()?;
        let stored = recorded("AccountOpened", 1, r#"{"name":"ada"}"#);
        let (mut first, mut second) = (Vec::new(), Vec::new());
        upcasters.upcast_into(stored.clone(), &mut first)?;
        upcasters.upcast_into(stored.clone(), &mut second)?;
        assert_eq!(
            first, second,
            "the same stored event reads the same way twice"
        );
        assert_eq!(first[0].event_id, stored.event_id);
        assert_ne!(first[1].event_id, stored.event_id);
        Ok(())
    }

    #[tokio::test]
    async fn type_filtered_read_never_returns_an_empty_page_while_matches_remain(
    ) -> Result<(), Box<dyn Error>> {
        let inner = InMemoryStore::new();
        let stream = StreamId::new("account-1")?;
        // Each old "AccountOpened" splits into "Opened" and "Named"; only
        // the last stored event has a wanted "Closed".
        let opened = Payload::from_json(r#"{"name":"a"}"#)?;
        let mut events: Vec<NewEvent> = (0..5)
            .map(|_| NewEvent::new("AccountOpened", 1, opened.clone()))
            .collect::<Result<_, _>>()?;
        events.push(NewEvent::new("Closed", 1, Payload::from_json("{}")?)?);
        inner
            .append_to_stream(&stream, ExpectedVersion::NoStream, events)
            .await?;
        let store = inner.with_upcasters(bank_chain().current("Closed", 1).build()?);
        let page = store
            .read_all(
                ReadAll::after(Position::START)
                    .event_types([EventType::new("Opened")?, EventType::new("Named")?])
                    .limit(1),
            )
            .await?;
        assert_eq!(page.len(), 2, "one stored event split in two");
        let page = store
            .read_all(
                ReadAll::after(Position::START)
                    .event_types([EventType::new("Closed")?])
                    .limit(1),
            )
            .await?;
        let found: Vec<(&str, Position)> = page
            .iter()
            .map(|e| (e.event_type.as_str(), e.position))
            .collect();
        assert_eq!(found, [("Closed", Position(6))]);
        Ok(())
    }

    #[tokio::test]
    async fn upcasting_store_reads_old_names_through_new_type_filters() -> Result<(), Box<dyn Error>>
    {
        let inner = InMemoryStore::new();
        let stream = StreamId::new("account-1")?;
        let old = NewEvent::new("AccountOpened", 1, Payload::from_json(r#"{"name":"ada"}"#)?)?;
        let other = NewEvent::new("Closed", 1, Payload::from_json("{}")?)?;
        inner
            .append_to_stream(&stream, ExpectedVersion::NoStream, vec![old, other])
            .await?;
        let store = inner
            .clone()
            .with_upcasters(bank_chain().current("Closed", 1).build()?);
        let page = store
            .read_all(ReadAll::after(Position::START).event_types([EventType::new("Opened")?]))
            .await?;
        let types: Vec<&str> = page.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(types, ["Opened"]);
        let whole = store.read_stream_to_end(&stream).await?;
        let types: Vec<&str> = whole.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(types, ["Opened", "Named", "Closed"]);
        // Stored rows are never rewritten.
        let raw = inner.read_stream_to_end(&stream).await?;
        assert_eq!(raw[0].event_type, "AccountOpened");
        Ok(())
    }
}
