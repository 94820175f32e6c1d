//! Sagas (process managers): reactions to events that drive a process
//! across aggregates, each committed exactly once in effect.
//!
//! # A reaction is one atomic append
//!
//! A saga reacts to an event with code over a unit of work: it loads
//! aggregates, decides commands on them (a refused command comes back as a
//! value, so the saga can compensate), and records events of its own
//! state. The runner then commits, in **one** append, every stream the unit
//! decided on (each with the exact version it loaded), the instance's own
//! events, and the saga's tracking position. A crash before the commit
//! runs the reaction again; after it, the tracking position says it is
//! done, and the store refuses a second commit of the same reaction
//! ([`AppendError::AlreadyTracked`](annals_core::AppendError::AlreadyTracked)).
//! A conflict (an aggregate changed underneath) runs the reaction again on
//! fresh state. So there is no moment at which the commands are stored and
//! the saga does not know it, or the reverse.
//!
//! Under load, the reactions to the events of one batch (up to 128
//! positions) share a unit of work and commit in one such append, each
//! command still caused by its own event: one disk sync for many
//! reactions. A later reaction sees what an earlier one decided, as if
//! they ran one after the other; if one fails, those before it commit on
//! their own and the failure policy takes over at the failed one. Within
//! an append, each stream's events stay together, so one reaction's events
//! are not always at consecutive positions.
//!
//! # Instances and their state
//!
//! [`Saga::instance`] maps an event to an instance (a transfer's id, say,
//! or the correlation id). Each instance's state is event-sourced in a
//! stream of the saga's category, `{NAME}-{instance}`: the saga's own
//! state events ([`SagaState::Event`]) beside the runner's (deadlines set,
//! fired and cancelled; the end). An instance that [finished](Reaction::finish)
//! ignores later events.
//!
//! # Deadlines
//!
//! A reaction can ask to be woken later ([`Reaction::schedule`]). The
//! deadline is an event of the instance, so it outlives restarts; when it
//! is due the saga reacts to [`Input::Deadline`] like to an event, and the
//! instance records that it fired, in the same append, so it fires once. A
//! deadline is cancelled by [`Reaction::cancel`], and all of them when the
//! instance finishes. Time comes from a [`Clock`]: [`SystemClock`] by
//! default, [`ManualClock`] in tests.
//!
//! # One runner per saga
//!
//! Run a saga in one process at a time. A second runner of the same saga
//! (an old process still stopping, say) is safe: the store refuses what
//! the other already committed, and it never acts twice. But it does the
//! work twice to find that out.
//!
//! # Causation and correlation
//!
//! The commands of a reaction carry the triggering event's id as their
//! causation id and its correlation id (or the event's id, when it has
//! none), so one correlation id finds everything one request caused.
//!
//! # No side effects in a reaction
//!
//! A reaction may run more than once (after a crash before its commit, or
//! on a conflict), and it runs before anything is committed. An email sent
//! from it could be sent twice, or be sent for a reaction that was then
//! never committed. So a reaction only decides and records; an effect
//! outside the store (an email, a webhook) is done by a durable handler
//! that follows the committed event the reaction recorded.

mod clock;
pub(crate) mod deadlines;
mod instance;
mod reaction;
pub(crate) mod target;

use annals_core::{DomainEvent, EventSet, Timestamp};
use async_trait::async_trait;

use crate::envelope::Envelope;
use crate::projection::{FailurePolicy, HandlerError};

pub use clock::{Clock, ManualClock, SystemClock};
pub(crate) use deadlines::{DeadlineIndex, Deadlines};
pub use instance::{Instance, InstanceEvent};
pub use reaction::Reaction;
pub(crate) use target::SagaTarget;

/// A saga's state per instance, event-sourced in the instance's stream.
///
/// The instance's stream also holds the runner's own events, stored as
/// `SagaDeadlineSet`, `SagaDeadlineFired`, `SagaDeadlineCancelled` and
/// `SagaFinished`: the state's events must not use those names.
pub trait SagaState: Default + Clone + Send + Sync + 'static {
    /// The events that change it, recorded by reactions.
    type Event: DomainEvent + Clone;

    /// Applies one event (infallible and deterministic, like an
    /// aggregate's `apply`).
    fn apply(&mut self, event: &Self::Event);
}

/// What a saga reacts to.
#[derive(Debug)]
#[non_exhaustive]
pub enum Input<'a, E> {
    /// An event of the saga's event set, from the log.
    Event(&'a Envelope<E>),
    /// A deadline the instance set, now due.
    Deadline(Deadline),
}

/// A deadline that came due.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Deadline {
    /// The name it was scheduled under.
    pub name: String,
    /// When it was due.
    pub due: Timestamp,
}

/// A saga (process manager): reacts to events, and to its own deadlines,
/// with units of work committed exactly once in effect.
///
/// See the [module docs](crate::saga) for what the runner guarantees.
#[async_trait]
pub trait Saga: Sized + Send + Sync + 'static {
    /// The events it reacts to.
    type Events: EventSet;

    /// Its state per instance.
    type State: SagaState;

    /// Its name: keys its tracking position, and is the category of its
    /// instances' streams, so it follows the rules of a category (no `-`)
    /// and of a projection's name.
    const NAME: &'static str;

    /// Whether the saga sets deadlines (default `true`). A saga that never
    /// does says `false`: the runner then keeps no deadline index, which
    /// spares it a read of the saga's own streams after its commits, and a
    /// reaction that schedules a deadline fails.
    const DEADLINES: bool = true;

    /// The instance an event belongs to, or `None` for an event this saga
    /// ignores.
    fn instance(&self, event: &Envelope<Self::Events>) -> Option<String>;

    /// Reacts to an event or a deadline of one instance: decides commands
    /// through `reaction`, records state events, sets or cancels deadlines,
    /// or finishes the instance. May run more than once: decide only, with
    /// no effects outside the store.
    async fn react(
        &self,
        reaction: &mut Reaction<Self>,
        input: Input<'_, Self::Events>,
    ) -> Result<(), HandlerError>;

    /// What the runner does when `react` fails or panics on an event.
    fn on_failure(&self) -> FailurePolicy {
        FailurePolicy::Stop
    }
}
