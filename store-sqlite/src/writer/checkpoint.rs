//! Saving and resetting followers' checkpoints.
//!
//! A checkpoint and the events its follower skipped are written by one
//! write, inside a savepoint of the group's transaction: a reader finds
//! both or neither, and a failure halfway leaves nothing of either.

use annals_core::{BackendError, BackendErrorKind, Checkpoint, Position, SkippedEvent, Timestamp};
use rusqlite::Connection;

use crate::error::backend;
use crate::writer::fault::{Faults, Step};

const SAVE_CHECKPOINT: &str = include_str!("save_checkpoint.sql");
const INSERT_SKIPPED_EVENT: &str = include_str!("insert_skipped_event.sql");
const DELETE_CHECKPOINT: &str = include_str!("delete_checkpoint.sql");
const DELETE_SKIPPED_EVENTS: &str = include_str!("delete_skipped_events.sql");

/// A checkpoint to save and the events skipped with it, its positions
/// already checked to fit in SQLite's integers, so that nothing can fail
/// halfway for want of a conversion.
pub(crate) struct CheckpointSave {
    name: String,
    position: i64,
    checkpoint: Checkpoint,
    /// Each event with its position as stored.
    skipped: Vec<(i64, SkippedEvent)>,
}

impl CheckpointSave {
    /// Checks the positions; one past `i64::MAX` cannot be stored.
    pub(crate) fn new(
        name: &str,
        checkpoint: Checkpoint,
        skipped: &[SkippedEvent],
    ) -> Result<Self, BackendError> {
        let stored = |position: Position| {
            i64::try_from(position.0).map_err(|_| {
                BackendError::new(
                    BackendErrorKind::Other,
                    format!(
                        "checkpoint {name:?}: position {position} is past the largest \
                         SQLite can store ({})",
                        i64::MAX
                    ),
                )
            })
        };
        Ok(CheckpointSave {
            name: name.to_owned(),
            position: stored(checkpoint.position)?,
            checkpoint,
            skipped: skipped
                .iter()
                .map(|event| Ok((stored(event.position)?, event.clone())))
                .collect::<Result<_, BackendError>>()?,
        })
    }

    /// The bytes the write holds beyond its fixed size, for the bounds of a
    /// group.
    pub(crate) fn bytes(&self) -> usize {
        self.skipped
            .iter()
            .map(|(_, event)| event.error.len())
            .sum::<usize>()
            + self.name.len()
    }
}

/// Replaces the checkpoint and records the skipped events not yet recorded.
/// The caller runs it in a savepoint.
pub(crate) fn save_checkpoint(
    conn: &Connection,
    save: &CheckpointSave,
    faults: &Faults,
    saved_at: Timestamp,
) -> Result<(), BackendError> {
    let failed = |e| backend("saving a checkpoint", e);
    faults.check(Step::Insert).map_err(failed)?;
    conn.prepare_cached(SAVE_CHECKPOINT)
        .and_then(|mut s| {
            s.execute(rusqlite::params![
                save.name,
                save.position,
                save.checkpoint.event_id.map(|id| id.to_string()),
                save.checkpoint.version,
                saved_at.as_unix_micros(),
            ])
        })
        .map_err(failed)?;
    let mut insert = conn.prepare_cached(INSERT_SKIPPED_EVENT).map_err(failed)?;
    for (position, event) in &save.skipped {
        faults.check(Step::Insert).map_err(failed)?;
        insert
            .execute(rusqlite::params![
                save.name,
                position,
                event.event_id.to_string(),
                event.event_type.as_str(),
                event.error,
                event.skipped_at.as_unix_micros(),
            ])
            .map_err(failed)?;
    }
    Ok(())
}

/// Forgets the checkpoint and the skipped events of `name`. The caller runs
/// it in a savepoint.
pub(crate) fn reset_checkpoint(conn: &Connection, name: &str) -> Result<(), BackendError> {
    let failed = |e| backend("resetting a checkpoint", e);
    for sql in [DELETE_CHECKPOINT, DELETE_SKIPPED_EVENTS] {
        conn.prepare_cached(sql)
            .and_then(|mut s| s.execute([name]))
            .map_err(failed)?;
    }
    Ok(())
}
