//! The storage half of an append on SQLite: what
//! [`run_append`](annals_core::store::run_append) asks of a backend.
//!
//! A tracked checkpoint is read and written on the write connection, inside
//! the append's savepoint (or its transaction, when it has one alone): it
//! is undone with the append's rows, and the next append of the same group
//! commit reads what this one set.

use annals_core::store::{AppendTarget, Inserted, PlannedRow};
use annals_core::{
    BackendError, BackendErrorKind, EventId, Position, RecordedEvent, StreamId, Timestamp, Tracking,
};
use rusqlite::Connection;

use crate::error::{backend, is_unique_violation};
use crate::read::load_checkpoint;
use annals_core::store::Names;

use crate::row::{event_from_row, to_sql_int};
use crate::writer::checkpoint::{save_checkpoint, CheckpointSave};
use crate::writer::fault::{Faults, Step};

const INSERT_EVENT: &str = include_str!("insert_event.sql");
const STREAM_VERSION: &str = include_str!("stream_version.sql");
const BY_EVENT_ID: &str = include_str!("by_event_id.sql");

/// Runs one statement of transaction control (`BEGIN`, `COMMIT`,
/// `SAVEPOINT`...) from the statement cache: every commit runs several, and
/// parsing them again each time costs more than running them.
pub(crate) fn execute(conn: &Connection, sql: &str) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// One append's view of the write connection, inside the batch's
/// transaction. `undo` rolls back to where the append began: a savepoint
/// when the append shares the transaction, the transaction itself when it
/// has it alone.
pub(crate) struct SqliteTarget<'c> {
    pub(crate) conn: &'c Connection,
    pub(crate) faults: &'c Faults,
    pub(crate) undo: &'static str,
}

impl AppendTarget for SqliteTarget<'_> {
    type Error = BackendError;

    fn current_version(&mut self, stream: &StreamId) -> Result<Option<u64>, BackendError> {
        let current: Option<i64> = self
            .conn
            .prepare_cached(STREAM_VERSION)
            .and_then(|mut s| s.query_row([stream.as_str()], |r| r.get(0)))
            .map_err(|e| backend("reading a stream's version", e))?;
        // Versions are stored from u64 values checked to fit in i64.
        Ok(current.and_then(|v| u64::try_from(v).ok()))
    }

    fn insert(&mut self, row: &PlannedRow<'_>) -> Result<Inserted, BackendError> {
        self.faults
            .check(Step::Insert)
            .map_err(|e| backend("appending", e))?;
        let event = row.event;
        let metadata = (!event.metadata().is_empty()).then(|| event.metadata().to_json());
        let inserted = self
            .conn
            .prepare_cached(INSERT_EVENT)
            .and_then(|mut insert| {
                insert.execute(rusqlite::params![
                    row.stream.as_str(),
                    to_sql_int(row.version),
                    &event.event_id().as_uuid().as_bytes()[..],
                    event.event_type().as_str(),
                    event.schema_version(),
                    event.payload().as_str(),
                    metadata,
                    row.recorded_at.as_unix_micros(),
                ])
            });
        match inserted {
            // Positions are rowids, assigned by SQLite.
            Ok(_) => Ok(Inserted::At(Position(
                u64::try_from(self.conn.last_insert_rowid()).unwrap_or(0),
            ))),
            Err(e) if is_unique_violation(&e) => Ok(Inserted::IdTaken),
            Err(e) => Err(backend("appending", e)),
        }
    }

    fn undo(&mut self) -> Result<(), BackendError> {
        execute(self.conn, self.undo).map_err(|e| backend("undoing an append", e))
    }

    fn find_event(&mut self, id: EventId) -> Result<Option<RecordedEvent>, BackendError> {
        let failed = |e| backend("looking up an event id", e);
        let mut lookup = self.conn.prepare_cached(BY_EVENT_ID).map_err(failed)?;
        let mut rows = lookup
            .query([&id.as_uuid().as_bytes()[..]])
            .map_err(failed)?;
        match rows.next().map_err(failed)? {
            None => Ok(None),
            // Without the stored event a retry cannot be told from a reuse.
            Some(row) => event_from_row(row, &mut Names::default())
                .map(Some)
                .map_err(|e| {
                    BackendError::with_source(
                        BackendErrorKind::Corrupt,
                        "a stored event with a retried id is unreadable",
                        e,
                    )
                }),
        }
    }

    fn tracked_position(&mut self, name: &str) -> Result<Option<Position>, BackendError> {
        Ok(load_checkpoint(self.conn, name)?.map(|checkpoint| checkpoint.position))
    }

    fn set_checkpoint(
        &mut self,
        tracking: &Tracking,
        saved_at: Timestamp,
    ) -> Result<(), BackendError> {
        // No skipped events: the name's recorded ones stay as they are.
        let save = CheckpointSave::new(&tracking.name, tracking.checkpoint, &[])?;
        save_checkpoint(self.conn, &save, self.faults, saved_at)
    }
}
