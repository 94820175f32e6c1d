//! What a reaction works with: the instance's state, the unit of work its
//! commands go into, deadlines, and the end of the instance.

use std::sync::Arc;
use std::time::Duration;

use annals_core::{Aggregate, CommandError, EventStore, LoadError, Timestamp, Unit};

use crate::projection::HandlerError;
use crate::saga::instance::{Instance, InstanceEvent};
use crate::saga::{Saga, SagaState};

/// The store a saga's unit of work runs on.
pub(crate) type SagaStore = Arc<dyn EventStore>;

/// One reaction of one saga instance: decide commands, record state,
/// set deadlines, finish.
///
/// Everything decided here is committed by the runner, in one append with
/// the saga's tracking position, once the reaction returns `Ok`; nothing is
/// if it fails.
pub struct Reaction<G: Saga> {
    unit: Unit<SagaStore>,
    id: String,
    instance: Instance<G>,
    recorded: Vec<InstanceEvent<<G::State as SagaState>::Event>>,
    now: Timestamp,
    /// A deadline was asked of a saga that declares none.
    refused_deadline: bool,
}

impl<G: Saga> Reaction<G> {
    pub(crate) fn new(
        unit: Unit<SagaStore>,
        id: String,
        instance: Instance<G>,
        now: Timestamp,
    ) -> Self {
        Reaction {
            unit,
            id,
            instance,
            recorded: Vec::new(),
            now,
            refused_deadline: false,
        }
    }

    /// The instance's id.
    pub fn instance(&self) -> &str {
        &self.id
    }

    /// The instance's state, with what this reaction recorded applied.
    pub fn state(&self) -> &G::State {
        &self.instance.state
    }

    /// The deadlines set and still pending, by name, with when they are due.
    pub fn deadlines(&self) -> impl Iterator<Item = (&str, Timestamp)> {
        self.instance
            .deadlines
            .iter()
            .map(|(n, d)| (n.as_str(), *d))
    }

    /// The time of the reaction, from the runner's clock.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Lets aggregate `id` handle `command` in this reaction's unit of
    /// work; its events are committed with the reaction. A refusal comes
    /// back as [`CommandError::Refused`] and changes nothing: the saga can
    /// compensate.
    pub async fn execute<A: Aggregate>(
        &self,
        id: &str,
        command: A::Command,
    ) -> Result<A, CommandError<A::Error>> {
        self.unit.execute::<A>(id, command).await
    }

    /// Aggregate `id` as this reaction's unit sees it.
    pub async fn load<A: Aggregate>(&self, id: &str) -> Result<A, LoadError> {
        self.unit.load::<A>(id).await
    }

    /// Records an event of the instance's state.
    pub fn record(&mut self, event: <G::State as SagaState>::Event) {
        self.push(InstanceEvent::State(event));
    }

    /// Asks to be woken with [`Input::Deadline`](crate::saga::Input::Deadline)
    /// named `name` once `after` has passed. Setting a name again moves it.
    pub fn schedule(&mut self, name: impl Into<String>, after: Duration) {
        if !G::DEADLINES {
            // Nothing would fire it: the reaction fails when it ends.
            self.refused_deadline = true;
            return;
        }
        let micros = i64::try_from(after.as_micros()).unwrap_or(i64::MAX);
        let due = Timestamp::from_unix_micros(self.now.as_unix_micros().saturating_add(micros));
        self.push(InstanceEvent::DeadlineSet {
            name: name.into(),
            due,
        });
    }

    /// Cancels the deadline `name`, if it is pending.
    pub fn cancel(&mut self, name: &str) {
        if self.instance.deadlines.contains_key(name) {
            self.push(InstanceEvent::DeadlineCancelled {
                name: name.to_owned(),
            });
        }
    }

    /// Ends the instance: its deadlines are cancelled, and it ignores later
    /// events.
    pub fn finish(&mut self) {
        if !self.instance.finished {
            self.push(InstanceEvent::Finished);
        }
    }

    /// Whether the instance has finished.
    pub fn is_finished(&self) -> bool {
        self.instance.finished
    }

    fn push(&mut self, event: InstanceEvent<<G::State as SagaState>::Event>) {
        self.instance.apply(&event);
        self.recorded.push(event);
    }

    /// Records that a deadline fired (the runner does, with the reaction
    /// to it).
    pub(crate) fn fired(&mut self, name: &str) {
        if self.instance.deadlines.contains_key(name) {
            self.push(InstanceEvent::DeadlineFired {
                name: name.to_owned(),
            });
        }
    }

    /// Puts what the reaction recorded into its unit of work.
    pub(crate) async fn into_unit(self) -> Result<Unit<SagaStore>, HandlerError> {
        if self.refused_deadline {
            return Err(format!(
                "saga {} scheduled a deadline, but it declares none (Saga::DEADLINES is false)",
                G::NAME
            )
            .into());
        }
        if !self.recorded.is_empty() {
            self.unit
                .execute::<Instance<G>>(&self.id, self.recorded)
                .await?;
        }
        Ok(self.unit)
    }
}
