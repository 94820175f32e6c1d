//! Where a projection's batches go: an SQLite or PostgreSQL read model
//! (exactly once) or any other projection with its checkpoint in the event
//! store (at least once). The runner's loop drives them all the same way.

use std::path::PathBuf;

use annals_core::{BackendError, Checkpoint, CheckpointStore, SkippedEvent};
use async_trait::async_trait;

use crate::envelope::Envelope;
use crate::error::RunError;
use crate::projection::{Projection, SqliteProjection};
use crate::read_model::{guarded, BatchError};
use crate::sqlite::ReadModel;
use crate::target::{ApplyError, Target};

// ---------------------------------------------------------------------------
// Exactly once: an SQLite read model, worked on blocking threads.

pub(crate) struct SqliteTarget<P> {
    path: PathBuf,
    /// The projection and its model. Taken while a blocking thread has
    /// them; absent for good only if that thread was lost.
    model: Option<ReadModel<P>>,
    projection: Option<P>,
}

impl<P: SqliteProjection> SqliteTarget<P> {
    pub(crate) fn new(path: PathBuf, projection: P) -> Self {
        SqliteTarget {
            path,
            model: None,
            projection: Some(projection),
        }
    }

    fn failed(doing: &'static str, source: BackendError) -> RunError {
        RunError::backend(P::NAME, doing, source)
    }

    /// The blocking thread working on the model was lost (it panicked, or
    /// the runtime shut down).
    fn thread_failed(doing: &'static str, join: tokio::task::JoinError) -> RunError {
        Self::failed(
            doing,
            BackendError::new(
                annals_core::BackendErrorKind::Other,
                format!("the read model's thread failed: {join}"),
            ),
        )
    }

    /// Runs `work` on the model on a blocking thread.
    async fn blocking<T: Send + 'static>(
        &mut self,
        doing: &'static str,
        work: impl FnOnce(&mut ReadModel<P>) -> T + Send + 'static,
    ) -> Result<T, RunError> {
        let mut model = self.model.take().ok_or_else(|| {
            Self::failed(
                doing,
                BackendError::new(
                    annals_core::BackendErrorKind::Other,
                    "the read model was lost by an earlier failure",
                ),
            )
        })?;
        let (model, result) = tokio::task::spawn_blocking(move || {
            let result = work(&mut model);
            (model, result)
        })
        .await
        .map_err(|join| Self::thread_failed(doing, join))?;
        self.model = Some(model);
        Ok(result)
    }
}

#[async_trait]
impl<P: SqliteProjection> Target<P::Events> for SqliteTarget<P> {
    async fn open(&mut self) -> Result<Option<Checkpoint>, RunError> {
        let Some(projection) = self.projection.take() else {
            return Ok(None);
        };
        let path = self.path.clone();
        let doing = "opening the read model";
        let opened = tokio::task::spawn_blocking(move || ReadModel::open(projection, &path))
            .await
            .map_err(|join| Self::thread_failed(doing, join))?
            .map_err(|e| Self::failed(doing, e))?;
        let (model, checkpoint) = opened;
        self.model = Some(model);
        Ok(Some(checkpoint))
    }

    async fn apply(
        &mut self,
        events: Vec<Envelope<P::Events>>,
        checkpoint: Checkpoint,
        skipped: Option<SkippedEvent>,
    ) -> Result<(), ApplyError<P::Events>> {
        let result = self
            .blocking("applying a batch", move |model| {
                let outcome = model.apply(&events, checkpoint, skipped.as_ref());
                (events, outcome)
            })
            .await;
        match result {
            Err(run) => Err(ApplyError::Run(run)),
            Ok((events, outcome)) => applied(P::NAME, events, outcome),
        }
    }

    fn rolls_back(&self) -> bool {
        true
    }

    async fn begin_rebuild(&mut self) -> Result<Checkpoint, RunError> {
        self.blocking("starting a rebuild", ReadModel::begin_rebuild)
            .await?
            .map_err(|e| Self::failed("starting a rebuild", e))
    }

    async fn finish_rebuild(&mut self, _cursor: Checkpoint) -> Result<Checkpoint, RunError> {
        self.blocking("swapping the rebuilt model in", ReadModel::finish_rebuild)
            .await?
            .map_err(|e| Self::failed("swapping the rebuilt model in", e))
    }
}

/// What an exactly-once batch's outcome means to the runner.
fn applied<E>(
    projection: &'static str,
    events: Vec<Envelope<E>>,
    outcome: Result<(), BatchError>,
) -> Result<(), ApplyError<E>> {
    match outcome {
        Ok(()) => Ok(()),
        Err(BatchError::Handler { index, error }) => Err(ApplyError::Handler {
            events,
            index,
            error,
        }),
        Err(BatchError::Backend(e)) => Err(ApplyError::Run(RunError::backend(
            projection,
            "applying a batch",
            e,
        ))),
    }
}

// ---------------------------------------------------------------------------
// Exactly once: a PostgreSQL read model, worked on the runtime.

#[cfg(feature = "postgres")]
pub(crate) struct PostgresTarget<P> {
    model: crate::postgres::ReadModel<P>,
}

#[cfg(feature = "postgres")]
impl<P: crate::projection::PostgresProjection> PostgresTarget<P> {
    pub(crate) fn new(model: crate::postgres::ReadModel<P>) -> Self {
        PostgresTarget { model }
    }
}

#[cfg(feature = "postgres")]
#[async_trait]
impl<P: crate::projection::PostgresProjection> Target<P::Events> for PostgresTarget<P> {
    async fn open(&mut self) -> Result<Option<Checkpoint>, RunError> {
        let opened = self.model.open().await;
        opened
            .map(Some)
            .map_err(|e| RunError::backend(P::NAME, "opening the read model", e))
    }

    async fn apply(
        &mut self,
        events: Vec<Envelope<P::Events>>,
        checkpoint: Checkpoint,
        skipped: Option<SkippedEvent>,
    ) -> Result<(), ApplyError<P::Events>> {
        let outcome = self
            .model
            .apply(&events, checkpoint, skipped.as_ref())
            .await;
        applied(P::NAME, events, outcome)
    }

    fn rolls_back(&self) -> bool {
        true
    }

    async fn begin_rebuild(&mut self) -> Result<Checkpoint, RunError> {
        let begun = self.model.begin_rebuild().await;
        begun.map_err(|e| RunError::backend(P::NAME, "starting a rebuild", e))
    }

    async fn finish_rebuild(&mut self, _cursor: Checkpoint) -> Result<Checkpoint, RunError> {
        let swapped = self.model.finish_rebuild().await;
        swapped.map_err(|e| RunError::backend(P::NAME, "swapping the rebuilt model in", e))
    }
}

// ---------------------------------------------------------------------------
// At least once: any projection, its checkpoint in the event store.

pub(crate) struct StoreTarget<P, C> {
    projection: P,
    checkpoints: C,
}

impl<P: Projection, C: CheckpointStore> StoreTarget<P, C> {
    pub(crate) fn new(projection: P, checkpoints: C) -> Self {
        StoreTarget {
            projection,
            checkpoints,
        }
    }

    fn failed(doing: &'static str, source: BackendError) -> RunError {
        RunError::backend(P::NAME, doing, source)
    }

    async fn reset(&mut self) -> Result<(), RunError> {
        guarded(self.projection.reset()).await.map_err(|error| {
            Self::failed(
                "resetting the projection",
                BackendError::new(annals_core::BackendErrorKind::Other, error),
            )
        })?;
        if !P::IN_MEMORY {
            self.checkpoints
                .reset_checkpoint(P::NAME)
                .await
                .map_err(|e| Self::failed("resetting the checkpoint", e))?;
        }
        Ok(())
    }
}

#[async_trait]
impl<P: Projection, C: CheckpointStore + 'static> Target<P::Events> for StoreTarget<P, C> {
    async fn open(&mut self) -> Result<Option<Checkpoint>, RunError> {
        if P::IN_MEMORY {
            return Ok(None);
        }
        self.checkpoints
            .load_checkpoint(P::NAME)
            .await
            .map_err(|e| Self::failed("loading the checkpoint", e))
    }

    async fn apply(
        &mut self,
        events: Vec<Envelope<P::Events>>,
        checkpoint: Checkpoint,
        skipped: Option<SkippedEvent>,
    ) -> Result<(), ApplyError<P::Events>> {
        for (index, event) in events.iter().enumerate() {
            if let Err(error) = guarded(self.projection.handle(event)).await {
                return Err(ApplyError::Handler {
                    events,
                    index,
                    error,
                });
            }
        }
        if let Err(error) = guarded(self.projection.flush()).await {
            if events.is_empty() {
                return Err(ApplyError::Run(Self::failed(
                    "flushing the projection",
                    BackendError::new(annals_core::BackendErrorKind::Other, error),
                )));
            }
            // The whole batch is in doubt: it fails at its first event.
            return Err(ApplyError::Handler {
                index: 0,
                error: format!("flushing the batch failed: {error}"),
                events,
            });
        }
        if P::IN_MEMORY && skipped.is_none() {
            return Ok(());
        }
        let skipped: Vec<SkippedEvent> = skipped.into_iter().collect();
        self.checkpoints
            .save_checkpoint(P::NAME, checkpoint, &skipped)
            .await
            .map_err(|e| ApplyError::Run(Self::failed("saving the checkpoint", e)))
    }

    fn rolls_back(&self) -> bool {
        false
    }

    async fn begin_rebuild(&mut self) -> Result<Checkpoint, RunError> {
        self.reset().await?;
        Ok(Checkpoint::start(P::VERSION))
    }

    async fn finish_rebuild(&mut self, cursor: Checkpoint) -> Result<Checkpoint, RunError> {
        // The projection was rebuilt in place.
        Ok(cursor)
    }
}
