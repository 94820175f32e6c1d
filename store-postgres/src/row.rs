//! Turning stored rows into events, for every query that returns events.
//!
//! A row that does not fit (a name that breaks the rules, a negative
//! version, metadata that is not metadata) was changed behind the store's
//! back: it is reported as [`ReadError::Corrupt`] with its position, never
//! a panic.

use annals_core::store::{Names, RecordedParts, ReplayEvent};
use annals_core::{EventId, Metadata, Payload, Position, ReadError, RecordedEvent, Timestamp};
use tokio_postgres::Row;

/// The columns of a whole event, in the order [`event_from_row`] reads.
pub(crate) const EVENT_COLUMNS: &str =
    "position, stream_id, version, event_id, event_type, schema_version, payload, metadata, recorded_at";

/// The columns a replay needs, in the order [`replay_event_from_row`] reads.
pub(crate) const REPLAY_COLUMNS: &str = "position, version, event_type, schema_version, payload";

/// A value for a `bigint` column. Positions and versions the store writes
/// are checked to fit; anything larger is kept at the largest value.
pub(crate) fn to_sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn corrupt(position: Position, reason: impl Into<String>) -> ReadError {
    ReadError::Corrupt {
        position,
        reason: reason.into(),
    }
}

/// The position in a row's first column, `None` when it is not one.
pub(crate) fn position_in(row: &Row) -> Option<Position> {
    row.try_get::<_, i64>(0)
        .ok()
        .and_then(|p| u64::try_from(p).ok())
        .map(Position)
}

fn position_of(row: &Row) -> Result<Position, ReadError> {
    position_in(row).ok_or_else(|| corrupt(Position::START, "position is not a positive integer"))
}

fn column<'r, T: tokio_postgres::types::FromSql<'r>>(
    row: &'r Row,
    i: usize,
    position: Position,
    name: &str,
) -> Result<T, ReadError> {
    row.try_get(i)
        .map_err(|_| corrupt(position, format!("{name} is unreadable")))
}

fn version_of(version: i64, position: Position) -> Result<u64, ReadError> {
    u64::try_from(version)
        .ok()
        .filter(|v| *v >= 1)
        .ok_or_else(|| corrupt(position, "version is below 1"))
}

/// One row of [`EVENT_COLUMNS`] as an event.
pub(crate) fn event_from_row(row: &Row, names: &mut Names) -> Result<RecordedEvent, ReadError> {
    let position = position_of(row)?;
    let stream_id = names
        .stream(column(row, 1, position, "stream id")?)
        .map_err(|reason| corrupt(position, reason))?;
    let version = version_of(column(row, 2, position, "version")?, position)?;
    let event_id = EventId::from_uuid(column(row, 3, position, "event id")?)
        .map_err(|_| corrupt(position, "event id is the nil UUID"))?;
    let event_type = names
        .event_type(column(row, 4, position, "event type")?)
        .map_err(|reason| corrupt(position, reason))?;
    let schema_version = u32::try_from(column::<i32>(row, 5, position, "schema version")?)
        .map_err(|_| corrupt(position, "schema version is out of range"))?;
    let payload = Payload::from_stored(column::<String>(row, 6, position, "payload")?);
    let metadata = match column::<Option<&str>>(row, 7, position, "metadata")? {
        None => Metadata::default(),
        Some(text) => Metadata::from_json(text)
            .map_err(|_| corrupt(position, "metadata is not valid metadata JSON"))?,
    };
    let recorded_at = Timestamp::from_unix_micros(column(row, 8, position, "recorded_at")?);
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

/// One row of [`REPLAY_COLUMNS`] as a replay event.
pub(crate) fn replay_event_from_row(
    row: &Row,
    names: &mut Names,
) -> Result<ReplayEvent, ReadError> {
    let position = position_of(row)?;
    let version = version_of(column(row, 1, position, "version")?, position)?;
    let event_type = names
        .event_type(column(row, 2, position, "event type")?)
        .map_err(|reason| corrupt(position, reason))?;
    let schema_version = u32::try_from(column::<i32>(row, 3, position, "schema version")?)
        .map_err(|_| corrupt(position, "schema version is out of range"))?;
    let payload = Payload::from_stored(column::<String>(row, 4, position, "payload")?);
    Ok(ReplayEvent::from_parts(
        position,
        version,
        event_type,
        schema_version,
        payload,
    ))
}

/// Every row as an event, sharing repeated names.
pub(crate) fn events_from_rows<T>(
    rows: &[Row],
    from_row: fn(&Row, &mut Names) -> Result<T, ReadError>,
) -> Result<Vec<T>, ReadError> {
    let mut names = Names::default();
    rows.iter().map(|row| from_row(row, &mut names)).collect()
}
