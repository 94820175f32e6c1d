//! Reading followers' checkpoints and the events they skipped.
//!
//! A row that does not fit (a negative position, an id that is not a UUID,
//! an event type that breaks the naming rules) was changed behind the
//! store's back: it is a [`BackendErrorKind::Corrupt`] error naming the
//! checkpoint, never a panic.
//!
//! Unlike every other read, a follower's skipped events come in one query,
//! not in pages: the contract returns them all, and they are few by nature
//! (each is an event a handler gave up on).

use annals_core::{
    BackendError, BackendErrorKind, Checkpoint, EventId, EventType, Position, SkippedEvent,
    Timestamp,
};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, Row};

use crate::error::backend;

const CHECKPOINT: &str = include_str!("checkpoint.sql");
const SKIPPED_EVENTS: &str = include_str!("skipped_events.sql");

/// The checkpoint saved under `name`, if any.
pub(crate) fn load_checkpoint(
    conn: &Connection,
    name: &str,
) -> Result<Option<Checkpoint>, BackendError> {
    let rows = read_rows(conn, CHECKPOINT, name, "reading a checkpoint", |columns| {
        Ok(Checkpoint {
            position: columns.position(0)?,
            event_id: match columns.0.get_ref(1) {
                Ok(ValueRef::Null) => None,
                _ => Some(columns.event_id(1)?),
            },
            version: {
                let version = columns.int(2, "version")?;
                u32::try_from(version).map_err(|_| format!("version {version} is out of range"))?
            },
        })
    })?;
    // The name is the key: there is one row at most.
    Ok(rows.into_iter().next())
}

/// The events `name` skipped, oldest position first.
pub(crate) fn skipped_events(
    conn: &Connection,
    name: &str,
) -> Result<Vec<SkippedEvent>, BackendError> {
    read_rows(
        conn,
        SKIPPED_EVENTS,
        name,
        "reading skipped events",
        |columns| skipped_event(&columns).map_err(|reason| format!("a skipped event: {reason}")),
    )
}

fn skipped_event(columns: &Columns<'_, '_>) -> Result<SkippedEvent, String> {
    let event_type = columns.text(2, "event type")?;
    Ok(SkippedEvent {
        position: columns.position(0)?,
        event_id: columns.event_id(1)?,
        event_type: EventType::new(event_type)
            .map_err(|e| format!("stored event type is invalid: {}", e.problem))?,
        error: columns.text(3, "error")?.to_owned(),
        skipped_at: Timestamp::from_unix_micros(columns.int(4, "skipped_at")?),
    })
}

/// Runs a query of `name`'s rows and turns each into a `T`; a row that does
/// not fit fails the read as corrupt.
fn read_rows<T>(
    conn: &Connection,
    sql: &str,
    name: &str,
    doing: &str,
    from_row: impl Fn(Columns<'_, '_>) -> Result<T, String>,
) -> Result<Vec<T>, BackendError> {
    let failed = |e| backend(doing, e);
    let mut statement = conn.prepare_cached(sql).map_err(failed)?;
    let mut rows = statement.query([name]).map_err(failed)?;
    let mut items = Vec::new();
    while let Some(row) = rows.next().map_err(failed)? {
        items.push(from_row(Columns(row)).map_err(|reason| corrupt(name, &reason))?);
    }
    Ok(items)
}

fn corrupt(name: &str, reason: &str) -> BackendError {
    BackendError::new(
        BackendErrorKind::Corrupt,
        format!("checkpoint {name:?} is unreadable: {reason}"),
    )
}

/// A stored row, read column by column with a reason for each misfit.
struct Columns<'r, 's>(&'r Row<'s>);

impl Columns<'_, '_> {
    fn int(&self, i: usize, column: &str) -> Result<i64, String> {
        match self.0.get_ref(i) {
            Ok(ValueRef::Integer(n)) => Ok(n),
            _ => Err(format!("{column} is not an integer")),
        }
    }

    fn text(&self, i: usize, column: &str) -> Result<&str, String> {
        match self.0.get_ref(i) {
            Ok(ValueRef::Text(bytes)) => {
                std::str::from_utf8(bytes).map_err(|_| format!("{column} is not valid UTF-8"))
            }
            _ => Err(format!("{column} is not text")),
        }
    }

    fn position(&self, i: usize) -> Result<Position, String> {
        let position = self.int(i, "position")?;
        u64::try_from(position)
            .map(Position)
            .map_err(|_| format!("position {position} is negative"))
    }

    fn event_id(&self, i: usize) -> Result<EventId, String> {
        let text = self.text(i, "event id")?;
        uuid::Uuid::parse_str(text)
            .ok()
            .and_then(|uuid| EventId::from_uuid(uuid).ok())
            .ok_or_else(|| format!("event id {text:?} is not a UUID"))
    }
}
