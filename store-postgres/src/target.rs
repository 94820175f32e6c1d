//! One group commit's appends, decided in memory against what the group's
//! transaction read under the head lock.
//!
//! Once the writer holds the head lock, no other writer in any process can
//! commit until it lets go. What it read after taking the lock (the
//! streams' versions, the stored events with the group's ids, the tracked
//! checkpoints) therefore stays true for the whole transaction, and each
//! append can be checked and given its positions here, with
//! [`run_append`] — the same sequence as on every backend — without a round
//! trip per event. The rows are then written in one statement.

use std::collections::{HashMap, HashSet};

use annals_core::store::{run_append, AppendTarget, Appended, Inserted, PlannedRow};
use annals_core::{
    AppendOutcome, AppendRequest, Checkpoint, EventId, Position, RecordedEvent, StreamId,
    Timestamp, Tracking,
};

/// What the group's transaction has read and planned so far.
#[derive(Default)]
pub(crate) struct Group {
    /// The newest position: stored, or given to a planned row.
    pub(crate) head: u64,
    /// Each stream's version, stored or planned; absent when it has none.
    pub(crate) versions: HashMap<String, u64>,
    /// The stored events with the ids of the group's events.
    pub(crate) stored: HashMap<EventId, RecordedEvent>,
    /// Each tracked checkpoint's position, stored or planned.
    pub(crate) checkpoints: HashMap<String, Position>,
    /// The appends planned so far, in order.
    pub(crate) planned: Vec<AppendOutcome>,
    /// Where each planned event is: (append, event) in `planned`.
    pub(crate) planned_ids: HashMap<EventId, (usize, usize)>,
    /// The checkpoints planned appends set, in order.
    pub(crate) checkpoint_sets: Vec<(String, Checkpoint, Timestamp)>,
}

/// How one append of the group ended.
pub(crate) enum Planned {
    /// Its rows are planned: `planned[i]` once the group commits.
    Inserted(usize),
    /// Nothing to write: the original result of a retry, or a refusal.
    Answered(Result<AppendOutcome, annals_core::AppendError>),
}

impl Group {
    /// Decides one append against the group as planned so far.
    pub(crate) fn plan(&mut self, request: &AppendRequest, recorded_at: Timestamp) -> Planned {
        let mut append = Append {
            group: self,
            head: 0,
            versions: Vec::new(),
            ids: HashSet::new(),
            checkpoint: None,
            sets: 0,
        };
        append.head = append.group.head;
        append.sets = append.group.checkpoint_sets.len();
        let appended = match run_append(&mut append, request, recorded_at) {
            Ok(appended) => appended,
            Err(never) => match never {},
        };
        match appended {
            Appended::Inserted(outcome) => {
                let index = self.planned.len();
                for (i, event) in outcome.events().iter().enumerate() {
                    self.planned_ids.insert(event.event_id, (index, i));
                }
                self.planned.push(outcome);
                Planned::Inserted(index)
            }
            Appended::AlreadyCommitted(outcome) => Planned::Answered(Ok(outcome)),
            Appended::Refused(error) => Planned::Answered(Err(error)),
        }
    }

    /// The checkpoints to store, the last set of each name only.
    pub(crate) fn final_checkpoints(&self) -> Vec<&(String, Checkpoint, Timestamp)> {
        let mut seen = HashSet::new();
        let mut last: Vec<_> = self
            .checkpoint_sets
            .iter()
            .rev()
            .filter(|(name, _, _)| seen.insert(name.as_str()))
            .collect();
        last.reverse();
        last
    }
}

/// One append being planned, with what it changed so it can be undone.
struct Append<'g> {
    group: &'g mut Group,
    head: u64,
    versions: Vec<(String, Option<u64>)>,
    ids: HashSet<EventId>,
    checkpoint: Option<(String, Option<Position>)>,
    sets: usize,
}

impl AppendTarget for Append<'_> {
    type Error = std::convert::Infallible;

    fn current_version(&mut self, stream: &StreamId) -> Result<Option<u64>, Self::Error> {
        Ok(self.group.versions.get(stream.as_str()).copied())
    }

    fn insert(&mut self, row: &PlannedRow<'_>) -> Result<Inserted, Self::Error> {
        let id = row.event.event_id();
        if self.group.stored.contains_key(&id)
            || self.group.planned_ids.contains_key(&id)
            || !self.ids.insert(id)
        {
            return Ok(Inserted::IdTaken);
        }
        let previous = self
            .group
            .versions
            .insert(row.stream.as_str().to_owned(), row.version);
        self.versions
            .push((row.stream.as_str().to_owned(), previous));
        self.group.head += 1;
        Ok(Inserted::At(Position(self.group.head)))
    }

    fn undo(&mut self) -> Result<(), Self::Error> {
        self.group.head = self.head;
        for (stream, previous) in self.versions.drain(..).rev() {
            match previous {
                Some(version) => self.group.versions.insert(stream, version),
                None => self.group.versions.remove(&stream),
            };
        }
        self.ids.clear();
        if let Some((name, previous)) = self.checkpoint.take() {
            match previous {
                Some(position) => self.group.checkpoints.insert(name, position),
                None => self.group.checkpoints.remove(&name),
            };
        }
        self.group.checkpoint_sets.truncate(self.sets);
        Ok(())
    }

    fn find_event(&mut self, id: EventId) -> Result<Option<RecordedEvent>, Self::Error> {
        if let Some(stored) = self.group.stored.get(&id) {
            return Ok(Some(stored.clone()));
        }
        Ok(self
            .group
            .planned_ids
            .get(&id)
            .and_then(|(append, event)| self.group.planned.get(*append)?.events().get(*event))
            .cloned())
    }

    fn tracked_position(&mut self, name: &str) -> Result<Option<Position>, Self::Error> {
        Ok(self.group.checkpoints.get(name).copied())
    }

    fn set_checkpoint(
        &mut self,
        tracking: &Tracking,
        saved_at: Timestamp,
    ) -> Result<(), Self::Error> {
        let previous = self
            .group
            .checkpoints
            .insert(tracking.name.clone(), tracking.checkpoint.position);
        self.checkpoint = Some((tracking.name.clone(), previous));
        self.group
            .checkpoint_sets
            .push((tracking.name.clone(), tracking.checkpoint, saved_at));
        Ok(())
    }
}
