//! The registry: upcasters checked as a whole, and how a stored event goes
//! through them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::event::{EventId, RecordedEvent};
use crate::id::EventType;
use crate::payload::Payload;
use crate::upcaster::error::{RegistryError, UpcastError};
use crate::upcaster::step::{UpcastEvent, Upcaster};

/// Builds an [`Upcasters`] registry.
#[derive(Debug, Default)]
pub struct UpcastersBuilder {
    pub(crate) current: Vec<(String, u32)>,
    pub(crate) steps: Vec<Upcaster>,
}

impl UpcastersBuilder {
    /// Declares the current version of a type name.
    pub fn current(mut self, event_type: &str, version: u32) -> Self {
        self.current.push((event_type.to_owned(), version));
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

    /// Whether `event_type` is an old name: upcasters read it, and it is
    /// not current.
    pub fn is_old_name(&self, event_type: &str) -> bool {
        !self.current.contains_key(event_type) && self.steps.contains_key(event_type)
    }

    /// Whether the registry holds no upcasters.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
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
            if self.is_old_name(name) {
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
            let outputs = step.run(item).map_err(|reason| UpcastError::Step {
                event_type: from_type.clone(),
                version: from_version,
                reason: reason.to_string(),
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
            let changed =
                event_type != event.event_type || item.schema_version != event.schema_version;
            let upcast_from = event
                .upcast_from
                .clone()
                .or_else(|| changed.then(|| (event.event_type.clone(), event.schema_version)));
            out.push(RecordedEvent {
                event_id: part_id(event.event_id, part),
                event_type,
                schema_version: item.schema_version,
                payload,
                metadata: item.metadata,
                upcast_from,
                ..event.clone()
            });
        }
        Ok(())
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{NewEvent, Position, StreamId};
    use serde_json::json;
    use std::error::Error;

    pub(crate) fn recorded(event_type: &str, version: u32, payload: &str) -> RecordedEvent {
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
    pub(crate) fn bank_chain() -> UpcastersBuilder {
        Upcasters::builder()
            .current("Opened", 3)
            .current("Named", 1)
            .upcaster(Upcaster::rename("AccountOpened", 1, "Opened"))
            .upcaster(Upcaster::reshape("Opened", 1, |p| {
                let name = p["name"].take();
                *p = json!({ "owner": name });
                Ok::<_, &str>(())
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
                    Ok::<_, &str>(vec![opened, named])
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
            .upcaster(Upcaster::reshape("A", 1, |_| Ok::<_, &str>(())))
            .upcaster(Upcaster::reshape("A", 1, |_| Ok::<_, &str>(())))
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
            .upcaster(Upcaster::reshape("A", 1, |_| Ok::<_, &str>(())))
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
            .upcaster(Upcaster::reshape("A", 1, |_| Ok::<_, &str>(())))
            .upcaster(Upcaster::reshape("A", 2, |_| Ok::<_, &str>(())))
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
                Ok::<_, &str>(vec![e])
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
                    Ok::<_, &str>(vec![e])
                },
            ))
            .upcaster(Upcaster::reshape("Opened", 2, |_| Ok::<_, &str>(())))
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
            .upcaster(Upcaster::reshape("Opened", 1, |_| Ok::<_, &str>(())))
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
}
