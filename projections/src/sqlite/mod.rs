//! A read model in an SQLite database: its tables, its checkpoint in the
//! same database, and rebuilds into a shadow database that is swapped in.
//!
//! Everything here blocks; the runner calls it on blocking threads.
//!
//! # Rebuilds never show a half-built model
//!
//! A rebuild reads the log from the start into a shadow database beside the
//! model's file (`<file>.<name>.rebuild`), with its own checkpoint, while
//! the model keeps serving from its file. Once the shadow has caught up
//! with the log, one transaction on the model's file drops the old tables,
//! creates the new ones, copies the rows over and moves the checkpoint:
//! readers see the old model until it commits and the new one after. A
//! rebuild that is interrupted leaves the old model serving, and the next
//! start goes on from the shadow's own checkpoint.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use annals_core::{BackendError, BackendErrorKind, Checkpoint, EventId, SkippedEvent};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use crate::envelope::Envelope;
use crate::projection::SqliteProjection;
use crate::read_model::{
    corrupt, created, event_failure, handled, position_column, stored_checkpoint, stored_event_id,
    stored_skipped, BatchError, Handled, Stored,
};

const SCHEMA: &str = include_str!("schema.sql");
const REGISTER: &str = include_str!("register.sql");
const LOAD_CHECKPOINT: &str = include_str!("load_checkpoint.sql");
const SAVE_CHECKPOINT: &str = include_str!("save_checkpoint.sql");
const RECORD_SKIPPED: &str = include_str!("record_skipped.sql");
const LIST_SKIPPED: &str = include_str!("list_skipped.sql");

/// How long a batch waits for another writer of the same file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A failure of the read model's database, naming what was being done.
pub(crate) fn failed(doing: &'static str) -> impl Fn(rusqlite::Error) -> BackendError {
    move |e| {
        let kind = match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                BackendErrorKind::Busy
            }
            Some(rusqlite::ErrorCode::DiskFull) => BackendErrorKind::StorageFull,
            Some(rusqlite::ErrorCode::ReadOnly) => BackendErrorKind::ReadOnly,
            Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
                BackendErrorKind::Corrupt
            }
            Some(rusqlite::ErrorCode::CannotOpen) => BackendErrorKind::Io,
            _ => BackendErrorKind::Other,
        };
        BackendError::with_source(kind, doing, e)
    }
}

/// A projection with its read model's connections.
pub(crate) struct ReadModel<P> {
    projection: P,
    path: PathBuf,
    main: Connection,
    /// The shadow database a rebuild builds into, while there is one.
    shadow: Option<Connection>,
}

impl<P: SqliteProjection> ReadModel<P> {
    /// Opens the model's file, creating the projection's tables if it has
    /// none yet, and returns its stored checkpoint.
    pub(crate) fn open(projection: P, path: &Path) -> Result<(Self, Checkpoint), BackendError> {
        let main = connect(path)?;
        let checkpoint = match load(&main, P::NAME)? {
            Some(stored) => stored.checkpoint,
            None => {
                register(&main, &projection)?;
                Checkpoint::start(P::VERSION)
            }
        };
        let model = ReadModel {
            projection,
            path: path.to_path_buf(),
            main,
            shadow: None,
        };
        if checkpoint.version == P::VERSION {
            // Nothing to rebuild: a shadow left by a rebuild that was
            // swapped in (and stopped before removing it), or one of
            // another version, is of no use.
            remove_database(&model.shadow_path())?;
        }
        Ok((model, checkpoint))
    }

    /// The shadow database of this projection.
    fn shadow_path(&self) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{}.rebuild", P::NAME));
        PathBuf::from(name)
    }

    /// Handles `events` and moves the checkpoint, with `skipped` recorded,
    /// in one transaction on the model being built: the shadow during a
    /// rebuild, else the model itself. On a handler's failure nothing is
    /// kept.
    pub(crate) fn apply(
        &mut self,
        events: &[Envelope<P::Events>],
        checkpoint: Checkpoint,
        skipped: Option<&SkippedEvent>,
    ) -> Result<(), BatchError> {
        let conn = self.shadow.as_mut().unwrap_or(&mut self.main);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| BatchError::Backend(failed("beginning a batch")(e)))?;
        let result = catch_unwind(AssertUnwindSafe(|| {
            self.projection.handle_batch(&tx, events)
        }));
        match handled(result, events.len()) {
            Handled::Done => {}
            // Dropping the transaction rolls the batch back.
            Handled::Failed(failure) => return Err(failure),
            Handled::Panicked(error) => {
                drop(tx);
                return Err(self.locate_panic(events, error));
            }
        }
        save(&tx, P::NAME, checkpoint, skipped).map_err(BatchError::Backend)?;
        tx.commit()
            .map_err(|e| BatchError::Backend(failed("committing a batch")(e)))
    }

    /// Finds which event a panic of `handle_batch` came from, by handling
    /// the batch again one event at a time in a transaction that is rolled
    /// back. If none fails this time, the batch's first event is blamed.
    fn locate_panic(&mut self, events: &[Envelope<P::Events>], error: String) -> BatchError {
        let at_first = |error| BatchError::Handler { index: 0, error };
        if events.len() < 2 {
            return at_first(error);
        }
        let conn = self.shadow.as_mut().unwrap_or(&mut self.main);
        let Ok(tx) = conn.transaction_with_behavior(TransactionBehavior::Immediate) else {
            return at_first(error);
        };
        for (index, event) in events.iter().enumerate() {
            let result = catch_unwind(AssertUnwindSafe(|| self.projection.handle(&tx, event)));
            if let Some(error) = event_failure(result) {
                return BatchError::Handler { index, error };
            }
        }
        at_first(error)
    }

    /// Starts (or goes on with) a rebuild into the shadow database, and
    /// returns where the shadow's build stands.
    pub(crate) fn begin_rebuild(&mut self) -> Result<Checkpoint, BackendError> {
        let path = self.shadow_path();
        if path.exists() {
            // A rebuild of this version that was interrupted goes on; any
            // other shadow (an older version, a damaged file) starts over.
            let resumed = connect(&path)
                .and_then(|conn| Ok((load(&conn, P::NAME)?, conn)))
                .ok()
                .and_then(|(stored, conn)| Some((stored?, conn)))
                .filter(|(stored, _)| stored.checkpoint.version == P::VERSION);
            if let Some((stored, conn)) = resumed {
                self.shadow = Some(conn);
                return Ok(stored.checkpoint);
            }
            remove_database(&path)?;
        }
        let conn = connect(&path)?;
        register(&conn, &self.projection)?;
        self.shadow = Some(conn);
        Ok(Checkpoint::start(P::VERSION))
    }

    /// Swaps the rebuilt model in: one transaction on the model's file
    /// drops the old tables, creates the new ones and copies the shadow's
    /// rows, checkpoint and skipped events over. Then removes the shadow.
    pub(crate) fn finish_rebuild(&mut self) -> Result<Checkpoint, BackendError> {
        let Some(shadow) = self.shadow.take() else {
            return Err(BackendError::new(
                BackendErrorKind::Other,
                "no rebuild is in progress",
            ));
        };
        drop(shadow);
        let path = self.shadow_path();
        let checkpoint = self.swap_in(&path)?;
        remove_database(&path)?;
        Ok(checkpoint)
    }

    fn swap_in(&mut self, shadow: &Path) -> Result<Checkpoint, BackendError> {
        let shadow_name = shadow.to_str().ok_or_else(|| {
            BackendError::new(BackendErrorKind::Io, "the shadow file's path is not UTF-8")
        })?;
        self.main
            .execute("ATTACH DATABASE ?1 AS annals_shadow", [shadow_name])
            .map_err(failed("attaching the rebuilt model"))?;
        let swapped = swap_tables(&mut self.main, &self.projection);
        let detached = self
            .main
            .execute_batch("DETACH DATABASE annals_shadow")
            .map_err(failed("detaching the rebuilt model"));
        let checkpoint = swapped?;
        detached?;
        Ok(checkpoint)
    }

    /// The events this projection skipped, as recorded in its model.
    pub(crate) fn skipped_events(path: &Path) -> Result<Vec<SkippedEvent>, BackendError> {
        let conn = connect(path)?;
        list_skipped(&conn, P::NAME)
    }
}

/// One transaction on the main file, with the shadow attached.
fn swap_tables<P: SqliteProjection>(
    conn: &mut Connection,
    projection: &P,
) -> Result<Checkpoint, BackendError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(failed("beginning the swap"))?;
    if let Some(old) = load(&tx, P::NAME)? {
        for table in &old.tables {
            tx.execute_batch(&format!("DROP TABLE IF EXISTS main.{}", quote(table)))
                .map_err(failed("dropping the old model's tables"))?;
        }
    }
    let tables = create_tables(&tx, projection)?;
    for table in &tables {
        let quoted = quote(table);
        tx.execute_batch(&format!(
            "INSERT INTO main.{quoted} SELECT * FROM annals_shadow.{quoted}"
        ))
        .map_err(failed("copying the rebuilt model's rows"))?;
    }
    tx.execute(
        "DELETE FROM main.annals_skipped_events WHERE projection = ?1",
        [P::NAME],
    )
    .map_err(failed("clearing the old model's skipped events"))?;
    tx.execute(
        "INSERT INTO main.annals_skipped_events
         SELECT * FROM annals_shadow.annals_skipped_events WHERE projection = ?1",
        [P::NAME],
    )
    .map_err(failed("copying the rebuilt model's skipped events"))?;
    let rebuilt = tx
        .query_row(
            "SELECT version, position, event_id, tables
             FROM annals_shadow.annals_projections WHERE name = ?1",
            [P::NAME],
            stored_row,
        )
        .map_err(failed("reading the rebuilt model's checkpoint"))
        .and_then(parse_stored)?;
    tx.execute(REGISTER, params![P::NAME, P::VERSION, tables_json(&tables)])
        .map_err(failed("recording the new model"))?;
    save(&tx, P::NAME, rebuilt.checkpoint, None)?;
    tx.commit().map_err(failed("committing the swap"))?;
    Ok(rebuilt.checkpoint)
}

/// The checkpoint of projection `name` in the read model at `path`,
/// read without writing to the file: `None` if the file, or the
/// projection's row in it, does not exist.
pub fn read_model_checkpoint(
    path: impl AsRef<Path>,
    name: &str,
) -> Result<Option<Checkpoint>, BackendError> {
    let path = path.as_ref();
    if !path.exists() {
        return Ok(None);
    }
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(failed("opening the read model"))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(failed("setting the busy timeout"))?;
    let has_table = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'annals_projections'",
            [],
            |_| Ok(()),
        )
        .optional()
        .map_err(failed("reading the checkpoint"))?
        .is_some();
    if !has_table {
        return Ok(None);
    }
    Ok(load(&conn, name)?.map(|stored| stored.checkpoint))
}

/// Opens a read model's database.
fn connect(path: &Path) -> Result<Connection, BackendError> {
    let conn = Connection::open(path).map_err(failed("opening the read model"))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(failed("setting the busy timeout"))?;
    // WAL lets readers of the model read while a batch writes. NORMAL
    // syncs at checkpoints only: a power loss may take back the last
    // batches, but their checkpoint goes with them, so the model is only
    // behind, never wrong, and catches up again.
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(failed("switching the read model to WAL"))?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(failed("configuring the read model"))?;
    conn.execute_batch(SCHEMA)
        .map_err(failed("creating the checkpoint tables"))?;
    Ok(conn)
}

/// Creates the projection's tables and its checkpoint row, at the start.
fn register<P: SqliteProjection>(conn: &Connection, projection: &P) -> Result<(), BackendError> {
    // Immediate: another projection sharing the file may be writing.
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
        .map_err(failed("beginning to create the model"))?;
    let tables = create_tables(&tx, projection)?;
    tx.execute(REGISTER, params![P::NAME, P::VERSION, tables_json(&tables)])
        .map_err(failed("recording the new model"))?;
    tx.commit().map_err(failed("creating the model"))
}

/// Runs the projection's `create` and returns the tables it made.
fn create_tables<P: SqliteProjection>(
    tx: &Transaction<'_>,
    projection: &P,
) -> Result<Vec<String>, BackendError> {
    let before = table_names(tx)?;
    created(catch_unwind(AssertUnwindSafe(|| projection.create(tx))))?;
    let after = table_names(tx)?;
    Ok(after.into_iter().filter(|t| !before.contains(t)).collect())
}

fn table_names(conn: &Connection) -> Result<Vec<String>, BackendError> {
    let mut statement = conn
        .prepare(
            "SELECT name FROM main.sqlite_master
             WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
        )
        .map_err(failed("listing the model's tables"))?;
    let names = statement
        .query_map([], |row| row.get::<_, String>(0))
        .and_then(Iterator::collect)
        .map_err(failed("listing the model's tables"));
    names
}

/// A double-quoted SQL identifier.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn tables_json(tables: &[String]) -> String {
    serde_json::Value::from(tables.to_vec()).to_string()
}

type StoredRow = (i64, i64, Option<String>, String);

fn stored_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredRow> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
}

fn parse_stored((version, position, event_id, tables): StoredRow) -> Result<Stored, BackendError> {
    let event_id = event_id.as_deref().map(parse_event_id).transpose()?;
    let tables: Vec<String> =
        serde_json::from_str(&tables).map_err(|_| corrupt("the table list is not a JSON array"))?;
    Ok(Stored {
        checkpoint: stored_checkpoint(version, position, event_id)?,
        tables,
    })
}

fn parse_event_id(text: &str) -> Result<EventId, BackendError> {
    uuid::Uuid::from_str(text)
        .map_err(|_| corrupt("an event id is not a UUID"))
        .and_then(stored_event_id)
}

fn load(conn: &Connection, name: &str) -> Result<Option<Stored>, BackendError> {
    conn.query_row(LOAD_CHECKPOINT, [name], stored_row)
        .optional()
        .map_err(failed("reading the checkpoint"))?
        .map(parse_stored)
        .transpose()
}

fn save(
    tx: &Transaction<'_>,
    name: &str,
    checkpoint: Checkpoint,
    skipped: Option<&SkippedEvent>,
) -> Result<(), BackendError> {
    let position = position_column(checkpoint.position)?;
    tx.execute(
        SAVE_CHECKPOINT,
        params![
            name,
            checkpoint.version,
            position,
            checkpoint.event_id.map(|id| id.to_string())
        ],
    )
    .map_err(failed("saving the checkpoint"))?;
    if let Some(skipped) = skipped {
        let position = position_column(skipped.position)?;
        tx.execute(
            RECORD_SKIPPED,
            params![
                name,
                position,
                skipped.event_id.to_string(),
                skipped.event_type.as_str(),
                skipped.error,
                skipped.skipped_at.as_unix_micros(),
            ],
        )
        .map_err(failed("recording a skipped event"))?;
    }
    Ok(())
}

fn list_skipped(conn: &Connection, name: &str) -> Result<Vec<SkippedEvent>, BackendError> {
    let mut statement = conn
        .prepare(LIST_SKIPPED)
        .map_err(failed("listing skipped events"))?;
    let rows = statement
        .query_map([name], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, i64>(4)?,
            ))
        })
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(failed("listing skipped events"))?;
    rows.into_iter()
        .map(|(position, event_id, event_type, error, skipped_at)| {
            let event_id = parse_event_id(&event_id)?;
            stored_skipped(position, event_id, event_type, error, skipped_at)
        })
        .collect()
}

/// Removes a database file with its WAL and shared-memory files.
fn remove_database(path: &Path) -> Result<(), BackendError> {
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        match std::fs::remove_file(PathBuf::from(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(BackendError::with_source(
                    BackendErrorKind::Io,
                    "removing the rebuild's shadow file",
                    e,
                ))
            }
        }
    }
    Ok(())
}
