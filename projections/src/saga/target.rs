//! A saga under the runner: each position of the log it reacts to is one
//! unit of work, committed in one append with the saga's tracking position.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use annals_core::{
    AppendError, BackendError, Checkpoint, CheckpointStore, CommandContext, EventId, EventStore,
    Metadata, Position, SkippedEvent, UnitOfWork,
};
use async_trait::async_trait;
use futures_util::FutureExt;

use crate::envelope::Envelope;
use crate::error::RunError;
use crate::panic::panic_message;
use crate::projection::HandlerError;
use crate::saga::instance::Instance;
use crate::saga::reaction::{Reaction, SagaStore};
use crate::saga::{Clock, Input, Saga};
use crate::target::{ApplyError, Target};

/// How often a reaction whose append met a conflict runs again before the
/// event counts as failed (and the saga's failure policy decides).
const CONFLICT_ATTEMPTS: u32 = 10;

/// The context of a reaction's commands: caused by the event, in its
/// correlation (or starting one from the event's id), in its tenant.
pub(crate) fn caused_by(event_id: EventId, metadata: &Metadata) -> CommandContext {
    let cause = *event_id.as_uuid();
    let ctx = CommandContext::new()
        .correlation_id(metadata.correlation_id.unwrap_or(cause))
        .causation_id(cause);
    match &metadata.tenant {
        Some(tenant) => ctx.tenant(tenant.clone()),
        None => ctx,
    }
}

/// How one position's reaction ended.
enum Reacted {
    /// Its append committed, moving the tracking position there.
    Committed,
    /// Nothing to commit (no instance, nothing decided), or committed
    /// before: the tracking position was not moved by it.
    Nothing,
}

/// Why one position's reaction did not commit.
enum Failed {
    /// The reaction failed on the event at this offset of the position's
    /// events.
    Handler {
        offset: usize,
        error: String,
    },
    Run(RunError),
}

/// Runs `react` for `input` on instance `id` within `unit`, turning a
/// panic into an error, and puts what it recorded into the unit.
pub(crate) async fn react_once<G: Saga>(
    saga: &G,
    unit: annals_core::Unit<SagaStore>,
    id: String,
    now: annals_core::Timestamp,
    input: Input<'_, G::Events>,
    fired: Option<&str>,
) -> Result<annals_core::Unit<SagaStore>, String> {
    let instance = unit
        .load::<Instance<G>>(&id)
        .await
        .map_err(|e| e.to_string())?;
    if instance.finished {
        return Ok(unit);
    }
    if let Some(name) = fired {
        if !instance.deadlines.contains_key(name) {
            // Fired or cancelled meanwhile: it fires once.
            return Ok(unit);
        }
    }
    let mut reaction = Reaction::new(unit, id, instance, now);
    if let Some(name) = fired {
        // Recorded first: the reaction sees the deadline gone.
        reaction.fired(name);
    }
    let reacted = AssertUnwindSafe(saga.react(&mut reaction, input))
        .catch_unwind()
        .await;
    match reacted {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return Err(error.to_string()),
        Err(panic) => return Err(format!("the reaction panicked: {}", panic_message(&*panic))),
    }
    reaction
        .into_unit()
        .await
        .map_err(|e: HandlerError| e.to_string())
}

pub(crate) struct SagaTarget<G, C> {
    saga: Arc<G>,
    store: SagaStore,
    checkpoints: C,
    clock: Arc<dyn Clock>,
}

impl<G: Saga, C: CheckpointStore> SagaTarget<G, C> {
    pub(crate) fn new(
        saga: Arc<G>,
        store: SagaStore,
        checkpoints: C,
        clock: Arc<dyn Clock>,
    ) -> Self {
        SagaTarget {
            saga,
            store,
            checkpoints,
            clock,
        }
    }

    fn failed(doing: &'static str, source: BackendError) -> RunError {
        RunError::Backend {
            projection: G::NAME,
            doing,
            source,
        }
    }

    /// Reacts to the events of one position (several only when an
    /// upcaster split one stored event) in one unit of work, and commits
    /// it with the tracking position moved to that position.
    async fn react_at(&self, events: &[Envelope<G::Events>]) -> Result<Reacted, Failed> {
        let first = &events[0];
        let tracking = Checkpoint {
            position: first.position,
            event_id: Some(first.event_id),
            version: 1,
        };
        let ctx = caused_by(first.event_id, &first.metadata);
        let work = UnitOfWork::new(self.store.clone());
        for attempt in 1..=CONFLICT_ATTEMPTS {
            let mut unit = work.unit(&ctx);
            for (offset, event) in events.iter().enumerate() {
                let Some(id) = self.saga.instance(event) else {
                    continue;
                };
                let input = Input::Event(event);
                unit = react_once(&*self.saga, unit, id, self.clock.now(), input, None)
                    .await
                    .map_err(|error| Failed::Handler { offset, error })?;
            }
            let request = unit.append_request();
            if request.streams().is_empty() {
                // Nothing decided: the batch's checkpoint covers it.
                return Ok(Reacted::Nothing);
            }
            match self.store.append(request.track(G::NAME, tracking)).await {
                Ok(_) => return Ok(Reacted::Committed),
                // Committed before (by this runner before a crash, or by
                // another): done, and not done twice.
                Err(AppendError::AlreadyTracked { .. }) => return Ok(Reacted::Nothing),
                Err(AppendError::Conflict { .. }) if attempt < CONFLICT_ATTEMPTS => {}
                Err(AppendError::Conflict { stream, .. }) => {
                    return Err(Failed::Handler {
                        offset: 0,
                        error: format!(
                            "stream {stream} kept changing underneath the reaction ({CONFLICT_ATTEMPTS} attempts)"
                        ),
                    })
                }
                Err(AppendError::Backend(e)) => {
                    return Err(Failed::Run(Self::failed("committing a reaction", e)))
                }
                Err(other) => {
                    return Err(Failed::Handler {
                        offset: 0,
                        error: format!("the reaction's append was refused: {other}"),
                    })
                }
            }
        }
        Ok(Reacted::Nothing)
    }
}

#[async_trait]
impl<G: Saga, C: CheckpointStore + 'static> Target<G::Events> for SagaTarget<G, C> {
    async fn open(&mut self) -> Result<Option<Checkpoint>, RunError> {
        self.checkpoints
            .load_checkpoint(G::NAME)
            .await
            .map_err(|e| Self::failed("loading the tracking position", e))
    }

    async fn apply(
        &mut self,
        events: Vec<Envelope<G::Events>>,
        checkpoint: Checkpoint,
        skipped: Option<SkippedEvent>,
    ) -> Result<(), ApplyError<G::Events>> {
        let mut start = 0;
        // Where this batch's own tracked appends moved the position.
        let mut committed = Position::START;
        while start < events.len() {
            let position = events[start].position;
            let end = start
                + events[start..]
                    .iter()
                    .take_while(|e| e.position == position)
                    .count();
            match self.react_at(&events[start..end]).await {
                Ok(Reacted::Committed) => committed = position,
                Ok(Reacted::Nothing) => {}
                Err(Failed::Handler { offset, error }) => {
                    return Err(ApplyError::Handler {
                        index: start + offset,
                        error,
                        events,
                    })
                }
                Err(Failed::Run(e)) => return Err(ApplyError::Run(e)),
            }
            start = end;
        }
        // The store only moves it forward: a runner that lags behind
        // another never takes it back.
        if checkpoint.position > committed || skipped.is_some() {
            let skipped: Vec<SkippedEvent> = skipped.into_iter().collect();
            self.checkpoints
                .save_checkpoint(G::NAME, checkpoint, &skipped)
                .await
                .map_err(|e| ApplyError::Run(Self::failed("saving the tracking position", e)))?;
        }
        Ok(())
    }

    fn rolls_back(&self) -> bool {
        false
    }

    async fn begin_rebuild(&mut self) -> Result<Checkpoint, RunError> {
        Err(not_rebuilt::<G>())
    }

    async fn finish_rebuild(&mut self, _cursor: Checkpoint) -> Result<Checkpoint, RunError> {
        Err(not_rebuilt::<G>())
    }
}

/// A saga's reactions are commands: replaying them would issue them again.
fn not_rebuilt<G: Saga>() -> RunError {
    RunError::Backend {
        projection: G::NAME,
        doing: "rebuilding",
        source: BackendError::new(
            annals_core::BackendErrorKind::Other,
            "a saga is never rebuilt: replaying its reactions would issue their commands again",
        ),
    }
}

/// The store a saga's units of work run on, from the runner's store.
pub(crate) fn saga_store<S: EventStore + Clone + 'static>(store: &S) -> SagaStore {
    Arc::new(store.clone())
}
