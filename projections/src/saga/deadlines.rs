//! Deadlines: which are pending (learnt by following the saga's own
//! instance streams from the start of the log), and firing them when due.

use std::collections::{BTreeMap, HashMap};
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use annals_core::upcast::UpcastersBuilder;
use annals_core::{
    AppendError, Checkpoint, CheckpointStore, EventDecodeError, EventId, EventSet, EventType,
    Metadata, Position, ReadAll, RecordedEvent, SkippedEvent, Timestamp, UnitOfWork,
};
use async_trait::async_trait;
use tokio::sync::watch;

use crate::envelope::Envelope;
use crate::error::RunError;
use crate::saga::instance::{
    InstanceEvent, DEADLINE_CANCELLED, DEADLINE_FIRED, DEADLINE_SET, FINISHED,
};
use crate::saga::reaction::SagaStore;
use crate::saga::target::{caused_by, react_once};
use crate::saga::{Clock, Deadline, Input, Saga, SagaState};
use crate::target::{ApplyError, Target};

/// A deadline of the log, as the index keeps it.
#[derive(Debug, Clone)]
struct Pending {
    /// The `SagaDeadlineSet` event: the cause of what the deadline does.
    set_by: EventId,
    metadata: Metadata,
    position: Position,
}

/// The pending deadlines of one saga, by due time.
#[derive(Default)]
struct Schedule {
    by_due: BTreeMap<(Timestamp, String, String), Pending>,
    by_name: HashMap<(String, String), Timestamp>,
}

impl Schedule {
    /// Removes the deadline if it is still the one set by `set_by`.
    fn remove_set_by(&mut self, instance: &str, name: &str, set_by: EventId) {
        let key = (instance.to_owned(), name.to_owned());
        let Some(due) = self.by_name.get(&key).copied() else {
            return;
        };
        let by_due = (due, key.0.clone(), key.1.clone());
        if self.by_due.get(&by_due).is_some_and(|p| p.set_by == set_by) {
            self.by_due.remove(&by_due);
            self.by_name.remove(&key);
        }
    }

    fn remove(&mut self, instance: &str, name: &str) {
        let key = (instance.to_owned(), name.to_owned());
        if let Some(due) = self.by_name.remove(&key) {
            self.by_due.remove(&(due, key.0, key.1));
        }
    }
}

/// The pending deadlines of one saga, shared by the index that learns them
/// and the task that fires them.
pub(crate) struct Deadlines {
    schedule: Mutex<Schedule>,
    changed: watch::Sender<u64>,
    /// The runner's clock, once it starts.
    clock: std::sync::OnceLock<Arc<dyn Clock>>,
}

impl Deadlines {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Deadlines {
            schedule: Mutex::new(Schedule::default()),
            changed: watch::channel(0).0,
            clock: std::sync::OnceLock::new(),
        })
    }

    /// Sets the clock deadlines are due by (once, when the runner starts).
    pub(crate) fn use_clock(&self, clock: Arc<dyn Clock>) {
        let _ = self.clock.set(clock);
    }

    /// Whether a deadline is due and not yet fired.
    pub(crate) fn any_due(&self) -> bool {
        let Some(clock) = self.clock.get() else {
            return false;
        };
        self.first()
            .is_some_and(|((due, _, _), _)| due <= clock.now())
    }

    fn schedule(&self) -> std::sync::MutexGuard<'_, Schedule> {
        // Every change to the schedule is whole before the lock is let go.
        self.schedule.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn touch(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn first(&self) -> Option<((Timestamp, String, String), Pending)> {
        self.schedule()
            .by_due
            .first_key_value()
            .map(|(k, v)| (k.clone(), v.clone()))
    }
}

/// What the index reads of an instance stream.
#[derive(Debug)]
enum Kind {
    Set { name: String, due: Timestamp },
    Gone { name: String },
    Finished,
    Other,
}

/// An event of a saga's instance streams, as the deadline index reads it.
pub(crate) struct IndexEvent<G> {
    kind: Kind,
    saga: PhantomData<fn() -> G>,
}

impl<G: Saga> EventSet for IndexEvent<G> {
    fn narrow(read: ReadAll) -> ReadAll {
        read.category(G::NAME)
    }

    fn upcasters(builder: UpcastersBuilder) -> UpcastersBuilder {
        builder
    }

    fn decode(event: &RecordedEvent) -> Result<Option<Self>, EventDecodeError> {
        let own = [DEADLINE_SET, DEADLINE_FIRED, DEADLINE_CANCELLED, FINISHED];
        let kind = if own.contains(&event.event_type.as_str()) {
            match event.decode::<InstanceEvent<<G::State as SagaState>::Event>>()? {
                InstanceEvent::DeadlineSet { name, due } => Kind::Set { name, due },
                InstanceEvent::DeadlineFired { name }
                | InstanceEvent::DeadlineCancelled { name } => Kind::Gone { name },
                InstanceEvent::Finished => Kind::Finished,
                _ => Kind::Other,
            }
        } else {
            // The saga's own state events: not the index's business.
            Kind::Other
        };
        Ok(Some(IndexEvent {
            kind,
            saga: PhantomData,
        }))
    }
}

/// Keeps [`Deadlines`] up to date from the saga's instance streams; it
/// lives in memory and reads them from the start on each start.
pub(crate) struct DeadlineIndex<G> {
    deadlines: Arc<Deadlines>,
    saga: PhantomData<fn() -> G>,
}

impl<G> DeadlineIndex<G> {
    pub(crate) fn new(deadlines: Arc<Deadlines>) -> Self {
        DeadlineIndex {
            deadlines,
            saga: PhantomData,
        }
    }
}

#[async_trait]
impl<G: Saga> Target<IndexEvent<G>> for DeadlineIndex<G> {
    async fn open(&mut self) -> Result<Option<Checkpoint>, RunError> {
        Ok(None)
    }

    async fn apply(
        &mut self,
        events: Vec<Envelope<IndexEvent<G>>>,
        _checkpoint: Checkpoint,
        _skipped: Option<SkippedEvent>,
    ) -> Result<(), ApplyError<IndexEvent<G>>> {
        if events.is_empty() {
            return Ok(());
        }
        {
            let mut schedule = self.deadlines.schedule();
            for event in &events {
                let instance = event.stream_id.id();
                match &event.event.kind {
                    Kind::Set { name, due } => {
                        schedule.remove(instance, name);
                        let key = (instance.to_owned(), name.clone());
                        schedule.by_name.insert(key, *due);
                        schedule.by_due.insert(
                            (*due, instance.to_owned(), name.clone()),
                            Pending {
                                set_by: event.event_id,
                                metadata: event.metadata.clone(),
                                position: event.position,
                            },
                        );
                    }
                    Kind::Gone { name } => schedule.remove(instance, name),
                    Kind::Finished => {
                        let names: Vec<String> = schedule
                            .by_name
                            .keys()
                            .filter(|(i, _)| i == instance)
                            .map(|(_, n)| n.clone())
                            .collect();
                        for name in names {
                            schedule.remove(instance, &name);
                        }
                    }
                    Kind::Other => {}
                }
            }
        }
        self.deadlines.touch();
        Ok(())
    }

    fn rolls_back(&self) -> bool {
        false
    }

    async fn begin_rebuild(&mut self) -> Result<Checkpoint, RunError> {
        *self.deadlines.schedule() = Schedule::default();
        Ok(Checkpoint::start(1))
    }

    async fn finish_rebuild(&mut self, cursor: Checkpoint) -> Result<Checkpoint, RunError> {
        Ok(cursor)
    }
}

/// How many times a due deadline is tried before it is given up on and
/// recorded among the saga's skipped events.
const FIRE_ATTEMPTS: u32 = 5;

/// Fires the saga's deadlines as they come due, until stopped. A deadline
/// that cannot be fired is recorded among the skipped events of `index`
/// (the deadline index's name).
pub(crate) async fn fire<G, C>(
    index: &'static str,
    saga: Arc<G>,
    store: SagaStore,
    checkpoints: C,
    deadlines: Arc<Deadlines>,
    clock: Arc<dyn Clock>,
    mut stop: watch::Receiver<bool>,
) where
    G: Saga,
    C: CheckpointStore,
{
    let mut changed = deadlines.changed.subscribe();
    let mut failures: HashMap<(String, String), u32> = HashMap::new();
    loop {
        if *stop.borrow() || stop.has_changed().is_err() {
            return;
        }
        changed.borrow_and_update();
        let Some(((due, instance, name), pending)) = deadlines.first() else {
            tokio::select! {
                _ = changed.changed() => {}
                _ = stop.changed() => {}
            }
            continue;
        };
        if due > clock.now() {
            tokio::select! {
                () = clock.sleep_until(due) => {}
                _ = changed.changed() => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        let deadline = Deadline {
            name: name.clone(),
            due,
        };
        match fire_one(&*saga, &store, &clock, &instance, deadline, &pending).await {
            Ok(()) => {
                failures.remove(&(instance.clone(), name.clone()));
                // Only this setting of it: the reaction may have set it
                // again, and the index may have seen that already.
                deadlines
                    .schedule()
                    .remove_set_by(&instance, &name, pending.set_by);
            }
            Err(error) => {
                let tries = failures
                    .entry((instance.clone(), name.clone()))
                    .or_insert(0);
                *tries += 1;
                if *tries >= FIRE_ATTEMPTS {
                    give_up(&checkpoints, index, &pending, error).await;
                    failures.remove(&(instance.clone(), name.clone()));
                    deadlines
                        .schedule()
                        .remove_set_by(&instance, &name, pending.set_by);
                } else {
                    let pause = Duration::from_millis(100 << (*tries).min(6));
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        _ = stop.changed() => {}
                    }
                }
            }
        }
    }
}

/// Reacts to one due deadline and records that it fired, in one append
/// checked against the instance's version: it fires once.
async fn fire_one<G: Saga>(
    saga: &G,
    store: &SagaStore,
    clock: &Arc<dyn Clock>,
    instance: &str,
    deadline: Deadline,
    pending: &Pending,
) -> Result<(), String> {
    let ctx = caused_by(pending.set_by, &pending.metadata);
    let work = UnitOfWork::new(store.clone());
    for _ in 0..10 {
        let unit = work.unit(&ctx);
        let name = deadline.name.clone();
        let input = Input::Deadline(deadline.clone());
        let unit = react_once(
            saga,
            unit,
            instance.to_owned(),
            clock.now(),
            input,
            Some((&name, deadline.due)),
        )
        .await?;
        let request = unit.append_request();
        if request.streams().is_empty() {
            return Ok(());
        }
        match store.append(request).await {
            Ok(_) => return Ok(()),
            Err(AppendError::Conflict { .. }) => continue,
            Err(e) => return Err(e.to_string()),
        }
    }
    Err("the instance kept changing underneath the deadline's reaction".to_owned())
}

/// Records a deadline that could not be fired among the skipped events of
/// the deadline index, so that it can be listed and acted on. (The index
/// lives in memory, so its checkpoint is never read.)
async fn give_up<C: CheckpointStore>(
    checkpoints: &C,
    index: &str,
    pending: &Pending,
    error: String,
) {
    let Ok(event_type) = EventType::new(DEADLINE_SET) else {
        return;
    };
    let skipped = SkippedEvent {
        position: pending.position,
        event_id: pending.set_by,
        event_type,
        error: format!("the deadline could not be fired: {error}"),
        skipped_at: Timestamp::now(),
    };
    // Best effort: a failure here leaves it unrecorded, and nothing else.
    let _ = checkpoints
        .save_checkpoint(index, Checkpoint::start(1), &[skipped])
        .await;
}
