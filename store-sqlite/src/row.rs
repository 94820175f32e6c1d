//! Turning stored rows into events: shared by every query that returns
//! events, on the read pool and on the writer.
//!
//! A row that does not fit (a column of the wrong type, a name that breaks
//! the rules, a negative version) was changed behind the store's back: it
//! is reported as [`ReadError::Corrupt`] with its position, never a panic.

use annals_core::store::{Names, RecordedParts, ReplayEvent};
use annals_core::{EventId, Metadata, Payload, Position, ReadError, RecordedEvent, Timestamp};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, Row};

use crate::error::backend;

/// The columns every event query selects, in this order.
pub(crate) const EVENT_COLUMNS: &str =
    "position, stream_id, version, event_id, event_type, schema_version, payload, metadata, recorded_at";

/// Clamps a `u64` version or position to SQLite's `i64`; anything past
/// `i64::MAX` cannot be stored, so it reads like the largest stored value.
pub(crate) fn to_sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Turns a stored row into an event; a row that does not fit is reported
/// as [`ReadError::Corrupt`] with its position, never as a panic.
pub(crate) fn event_from_row(row: &Row<'_>, names: &mut Names) -> Result<RecordedEvent, ReadError> {
    let position: i64 = row
        .get(0)
        .map_err(|e| corrupt(Position::START, format!("unreadable position: {e}")))?;
    let position = u64::try_from(position)
        .map(Position)
        .map_err(|_| corrupt(Position::START, "negative position".into()))?;
    let bytes = |i: usize, column: &str| -> Result<&[u8], ReadError> {
        match row.get_ref(i) {
            Ok(ValueRef::Text(bytes)) => Ok(bytes),
            Ok(_) => Err(corrupt(position, format!("{column} is not text"))),
            Err(e) => Err(corrupt(position, format!("{column} is unreadable: {e}"))),
        }
    };
    let text = |i: usize, column: &str| -> Result<&str, ReadError> {
        std::str::from_utf8(bytes(i, column)?)
            .map_err(|_| corrupt(position, format!("{column} is not valid UTF-8")))
    };
    let int = |i: usize, column: &str| -> Result<i64, ReadError> {
        match row.get_ref(i) {
            Ok(ValueRef::Integer(n)) => Ok(n),
            _ => Err(corrupt(position, format!("{column} is not an integer"))),
        }
    };
    let stream_id = names
        .stream(text(1, "stream id")?)
        .map_err(|reason| corrupt(position, reason))?;
    let version = u64::try_from(int(2, "version")?)
        .ok()
        .filter(|v| *v >= 1)
        .ok_or_else(|| corrupt(position, "version is below 1".into()))?;
    let event_id = match row.get_ref(3) {
        Ok(ValueRef::Blob(bytes)) => uuid::Uuid::from_slice(bytes)
            .ok()
            .and_then(|u| EventId::from_uuid(u).ok()),
        _ => None,
    }
    .ok_or_else(|| corrupt(position, "event id is not a 16-byte UUID".into()))?;
    let event_type = names
        .event_type(text(4, "event type")?)
        .map_err(|reason| corrupt(position, reason))?;
    let schema_version = u32::try_from(int(5, "schema version")?)
        .map_err(|_| corrupt(position, "schema version is out of range".into()))?;
    let payload = Payload::from_stored(text(6, "payload")?.to_owned());
    let metadata = match row.get_ref(7) {
        Ok(ValueRef::Null) => Metadata::default(),
        _ => Metadata::from_json(text(7, "metadata")?)
            .map_err(|_| corrupt(position, "metadata is not valid metadata JSON".into()))?,
    };
    let recorded_at = Timestamp::from_unix_micros(int(8, "recorded_at")?);
    Ok(RecordedEvent::from(RecordedParts {
        position,
        stream_id,
        version,
        event_id,
        event_type,
        schema_version,
        payload,
        metadata,
        recorded_at,
    }))
}

/// Turns a row of a replay query into a [`ReplayEvent`].
pub(crate) fn replay_event_from_row(
    row: &Row<'_>,
    names: &mut Names,
) -> Result<ReplayEvent, ReadError> {
    let position = u64::try_from(int(row, 0).unwrap_or(-1))
        .map(Position)
        .map_err(|_| corrupt(Position::START, "position is not a positive integer".into()))?;
    let version = u64::try_from(int(row, 1).unwrap_or(0))
        .ok()
        .filter(|v| *v >= 1)
        .ok_or_else(|| corrupt(position, "version is below 1".into()))?;
    let event_type = match row.get_ref(2) {
        Ok(ValueRef::Text(bytes)) => std::str::from_utf8(bytes)
            .map_err(|_| "event type is not valid UTF-8".to_owned())
            .and_then(|text| names.event_type(text)),
        _ => Err("event type is not text".to_owned()),
    }
    .map_err(|reason| corrupt(position, reason))?;
    let schema_version = int(row, 3)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| corrupt(position, "schema version is out of range".into()))?;
    let payload = match row.get_ref(4) {
        Ok(ValueRef::Text(bytes)) => std::str::from_utf8(bytes)
            .map_err(|_| corrupt(position, "payload is not valid UTF-8".into()))?,
        _ => return Err(corrupt(position, "payload is not text".into())),
    };
    Ok(ReplayEvent::from_parts(
        position,
        version,
        event_type,
        schema_version,
        Payload::from_stored(payload.to_owned()),
    ))
}

fn int(row: &Row<'_>, i: usize) -> Option<i64> {
    match row.get_ref(i) {
        Ok(ValueRef::Integer(n)) => Some(n),
        _ => None,
    }
}

/// Runs a replay query and collects its rows.
pub(crate) fn query_replay_events<P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    capacity: usize,
) -> Result<Vec<ReplayEvent>, ReadError> {
    query_rows(conn, sql, params, capacity, replay_event_from_row)
}

fn corrupt(position: Position, reason: String) -> ReadError {
    ReadError::Corrupt { position, reason }
}

/// Runs a query whose rows are events and collects them.
pub(crate) fn query_events<P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    capacity: usize,
) -> Result<Vec<RecordedEvent>, ReadError> {
    query_rows(conn, sql, params, capacity, event_from_row)
}

/// Runs a query and turns each row into a `T`, sharing repeated names
/// across the rows.
fn query_rows<T, P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    capacity: usize,
    from_row: fn(&Row<'_>, &mut Names) -> Result<T, ReadError>,
) -> Result<Vec<T>, ReadError> {
    let failed = |e| ReadError::Backend(backend("reading events", e));
    let mut statement = conn.prepare_cached(sql).map_err(failed)?;
    let mut rows = statement.query(params).map_err(failed)?;
    let mut items = Vec::with_capacity(capacity.min(1024));
    let mut names = Names::default();
    while let Some(row) = rows.next().map_err(failed)? {
        items.push(from_row(row, &mut names)?);
    }
    Ok(items)
}
