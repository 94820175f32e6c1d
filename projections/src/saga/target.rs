//! A saga under the runner: each position of the log it reacts to is one
//! unit of work, committed in one append with the saga's tracking position.

use std::ops::Range;
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

/// Most positions whose reactions commit in one append.
const GROUP: usize = 128;

/// How a group of reactions ended.
enum Reacted {
    /// Their append committed, moving the tracking position to the last.
    Committed,
    /// Nothing to commit (no instance, nothing decided): the tracking
    /// position was not moved by them.
    Nothing,
    /// Refused: a runner (this one before a crash, or another) had already
    /// reacted to every position up to here, in order. Those after it, if
    /// any, are still to do.
    DoneThrough(Position),
}

/// Why a group of reactions did not commit.
enum Failed {
    /// The reaction to the event at `index` of the batch failed.
    Handler {
        index: usize,
        error: String,
    },
    /// The append kept meeting conflicts, or was refused (too large, say):
    /// the positions go again one at a time, to find the one at fault.
    Refused {
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
    fired: Option<(&str, annals_core::Timestamp)>,
) -> Result<annals_core::Unit<SagaStore>, String> {
    let instance = unit
        .load::<Instance<G>>(&id)
        .await
        .map_err(|e| e.to_string())?;
    if instance.finished {
        return Ok(unit);
    }
    if let Some((name, due)) = fired {
        if instance.deadlines.get(name) != Some(&due) {
            // Fired, cancelled or moved meanwhile: it fires once, and
            // only at the time it is set for.
            return Ok(unit);
        }
    }
    let mut reaction = Reaction::new(unit, id, instance, now);
    if let Some((name, _)) = fired {
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
        RunError::backend(G::NAME, doing, source)
    }

    /// Reacts to the events of `positions` (ranges of `events`, one per
    /// position of the log: several events only where an upcaster split
    /// one) in one unit of work, each reaction with its own event as its
    /// cause, and commits them in one append that moves the tracking
    /// position to the last. The append is refused if the tracking position
    /// already reached the first: none of them is committed twice.
    async fn react_together(
        &self,
        events: &[Envelope<G::Events>],
        positions: &[Range<usize>],
    ) -> Result<Reacted, Failed> {
        let (Some(first), Some(last)) = (positions.first(), positions.last()) else {
            return Ok(Reacted::Nothing);
        };
        let (first, last) = (&events[first.start], &events[last.start]);
        let tracking = Checkpoint {
            position: last.position,
            event_id: Some(last.event_id),
            version: 1,
        };
        let work = UnitOfWork::new(self.store.clone());
        for attempt in 1..=CONFLICT_ATTEMPTS {
            let unit = work.unit(&CommandContext::new());
            for range in positions {
                for (index, event) in events.iter().enumerate().take(range.end).skip(range.start) {
                    let Some(id) = self.saga.instance(event) else {
                        continue;
                    };
                    let ctx = caused_by(event.event_id, &event.metadata);
                    let input = Input::Event(event);
                    react_once(
                        &*self.saga,
                        unit.with_context(&ctx),
                        id,
                        self.clock.now(),
                        input,
                        None,
                    )
                    .await
                    .map_err(|error| Failed::Handler { index, error })?;
                }
            }
            let request = unit.append_request();
            if request.streams().is_empty() {
                // Nothing decided: the batch's checkpoint covers it.
                return Ok(Reacted::Nothing);
            }
            let request = request.track_from(G::NAME, first.position, tracking);
            match self.store.append(request).await {
                Ok(_) => return Ok(Reacted::Committed),
                // Committed before (by this runner before a crash, or by
                // another): done, and not done twice.
                Err(AppendError::AlreadyTracked { stored, .. }) => {
                    return Ok(Reacted::DoneThrough(stored))
                }
                Err(AppendError::Conflict { .. }) if attempt < CONFLICT_ATTEMPTS => {}
                Err(AppendError::Conflict { stream, .. }) => {
                    return Err(Failed::Refused {
                        error: format!(
                            "stream {stream} kept changing underneath the reaction ({CONFLICT_ATTEMPTS} attempts)"
                        ),
                    })
                }
                Err(AppendError::Backend(e)) => {
                    return Err(Failed::Run(Self::failed("committing a reaction", e)))
                }
                Err(other) => {
                    return Err(Failed::Refused {
                        error: format!("the reaction's append was refused: {other}"),
                    })
                }
            }
        }
        Ok(Reacted::Nothing)
    }

    /// Reacts to `positions` a group at a time; on a failure, commits the
    /// reactions before it on their own, then reports it. Returns the last
    /// position whose reaction this runner committed.
    async fn react_all(
        &self,
        events: &[Envelope<G::Events>],
        positions: &[Range<usize>],
        group: usize,
    ) -> Result<Option<Position>, Failed> {
        let mut committed = None;
        let mut next = 0;
        while next < positions.len() {
            let end = (next + group).min(positions.len());
            let chunk = &positions[next..end];
            let failed = match self.react_together(events, chunk).await {
                Ok(Reacted::Committed) => {
                    committed = Some(events[chunk[chunk.len() - 1].start].position);
                    next = end;
                    continue;
                }
                Ok(Reacted::Nothing) => {
                    next = end;
                    continue;
                }
                Ok(Reacted::DoneThrough(stored)) => {
                    // The positions after the stored one are still to do:
                    // they go again, on their own.
                    let done = chunk
                        .iter()
                        .take_while(|r| events[r.start].position <= stored)
                        .count();
                    next += done.max(1);
                    continue;
                }
                Err(failed) => failed,
            };
            if chunk.len() == 1 {
                return Err(match failed {
                    Failed::Refused { error } => Failed::Handler {
                        index: chunk[0].start,
                        error,
                    },
                    other => other,
                });
            }
            match failed {
                // One position at a time, so that only the contended (or
                // too large) one fails.
                Failed::Refused { .. } => {
                    if let Some(position) = Box::pin(self.react_all(events, chunk, 1)).await? {
                        committed = Some(position);
                    }
                    next = end;
                }
                // The reactions before the failed one commit on their own.
                Failed::Handler { index, error } => {
                    let before = chunk.iter().take_while(|r| r.end <= index).count();
                    if before > 0 {
                        // The runner then saves the position just before
                        // the failed one.
                        Box::pin(self.react_all(events, &chunk[..before], before)).await?;
                    }
                    return Err(Failed::Handler { index, error });
                }
                run @ Failed::Run(_) => return Err(run),
            }
        }
        Ok(committed)
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
        let mut positions: Vec<Range<usize>> = Vec::new();
        for (index, event) in events.iter().enumerate() {
            match positions.last_mut() {
                Some(last) if events[last.start].position == event.position => last.end = index + 1,
                _ => positions.push(index..index + 1),
            }
        }
        // Where this batch's own tracked appends moved the position.
        let committed = match self.react_all(&events, &positions, GROUP).await {
            Ok(committed) => committed.unwrap_or(Position::START),
            Err(Failed::Handler { index, error }) => {
                return Err(ApplyError::Handler {
                    index,
                    error,
                    events,
                })
            }
            // `react_all` turns a refusal of one position into its failure.
            Err(Failed::Refused { error }) => {
                return Err(ApplyError::Handler {
                    index: 0,
                    error,
                    events,
                })
            }
            Err(Failed::Run(e)) => return Err(ApplyError::Run(e)),
        };
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
    RunError::backend(
        G::NAME,
        "rebuilding",
        BackendError::new(
            annals_core::BackendErrorKind::Other,
            "a saga is never rebuilt: replaying its reactions would issue their commands again",
        ),
    )
}

/// The store a saga's units of work run on, from the runner's store.
pub(crate) fn saga_store<S: EventStore + Clone + 'static>(store: &S) -> SagaStore {
    Arc::new(store.clone())
}
