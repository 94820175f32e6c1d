//! The read side: a small pool of read-only connections and the decoding of
//! stored rows.
//!
//! Every read is one page (at most [`MAX_READ_LIMIT`](annals_core::MAX_READ_LIMIT)
//! rows) in its own read transaction, on a blocking thread. Long scans are
//! many pages, so no reader pins the WAL for long and memory stays bounded
//! by the page size, whatever the size of the log.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use annals_core::{
    BackendError, EventId, EventType, Metadata, Payload, Position, ReadError, RecordedEvent,
    ReplayEvent, StreamId, Timestamp,
};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, Row};
use tokio::sync::Semaphore;

use crate::error::backend;
use crate::options::SqliteOptions;
use crate::schema;

pub(crate) const STREAM_FORWARD: &str = include_str!("stream_forward.sql");
pub(crate) const STREAM_BACKWARD: &str = include_str!("stream_backward.sql");
pub(crate) const REPLAY_FORWARD: &str = include_str!("replay_forward.sql");
pub(crate) const REPLAY_BACKWARD: &str = include_str!("replay_backward.sql");
pub(crate) const ALL: &str = include_str!("all.sql");
pub(crate) const BY_EVENT_ID: &str = include_str!("by_event_id.sql");
pub(crate) const HEAD: &str = include_str!("head.sql");
pub(crate) const SNAPSHOT: &str = include_str!("snapshot.sql");

/// Read-only connections, opened on first use and reused.
pub(crate) struct ReadPool {
    options: SqliteOptions,
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

impl ReadPool {
    pub(crate) fn new(options: SqliteOptions, path: PathBuf) -> Arc<Self> {
        let size = options.read_pool_size;
        Arc::new(ReadPool {
            options,
            path,
            idle: Mutex::new(Vec::with_capacity(size)),
            permits: Semaphore::new(size),
        })
    }

    /// Runs `read` on a pooled connection, on a blocking thread.
    pub(crate) async fn run<T, E, F>(self: &Arc<Self>, read: F) -> Result<T, E>
    where
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<BackendError> + Send + 'static,
    {
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| E::from(BackendError::closed()))?;
        let pool = Arc::clone(self);
        let outcome = crate::blocking::run(move || {
            let conn = pool.take().map_err(E::from)?;
            let result = read(&conn);
            pool.put(conn);
            result
        })
        .await;
        drop(permit);
        outcome.map_err(E::from)?
    }

    fn take(&self) -> Result<Connection, BackendError> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        match idle {
            Some(conn) => Ok(conn),
            None => schema::open_reader(&self.options, &self.path)
                .map_err(|e| backend("opening a read connection", e)),
        }
    }

    fn put(&self, conn: Connection) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
    }

    /// Refuses every later read and drops the idle connections.
    pub(crate) fn close(&self) {
        self.permits.close();
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }
}

/// Clamps a `u64` version or position to SQLite's `i64`; anything past
/// `i64::MAX` cannot be stored, so it reads like the largest stored value.
pub(crate) fn to_sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The bounds of stream ids that start with `prefix`, compared byte for
/// byte: `[prefix, upper)`, with no upper bound when none exists.
///
/// UTF-8 orders bytes as it orders code points, so the first string past
/// every id that starts with `prefix` is the prefix with its last character
/// replaced by the next code point.
pub(crate) fn prefix_bounds(prefix: &str) -> (String, Option<String>) {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match u32::from(last) + 1 {
            0xD800 => Some('\u{E000}'),
            n => char::from_u32(n),
        };
        if let Some(next) = next {
            chars.push(next);
            return (prefix.to_owned(), Some(chars.into_iter().collect()));
        }
    }
    (prefix.to_owned(), None)
}

/// The stream ids and event types of the rows read so far in one query.
///
/// Rows of a page mostly repeat a few names (every row of a stream read has
/// the same stream id), so a name equal to one already read is shared
/// rather than checked and copied again.
#[derive(Default)]
pub(crate) struct Names {
    stream: Option<StreamId>,
    types: Vec<EventType>,
}

/// How many distinct event types a page remembers.
const REMEMBERED_TYPES: usize = 32;

impl Names {
    fn stream(&mut self, bytes: &[u8]) -> Result<StreamId, String> {
        if let Some(known) = &self.stream {
            if known.as_str().as_bytes() == bytes {
                return Ok(known.clone());
            }
        }
        let text = std::str::from_utf8(bytes).map_err(|_| "stream id is not valid UTF-8")?;
        let stream = StreamId::new(text)
            .map_err(|e| format!("stored stream id is invalid: {}", e.problem))?;
        self.stream = Some(stream.clone());
        Ok(stream)
    }

    fn event_type(&mut self, bytes: &[u8]) -> Result<EventType, String> {
        if let Some(known) = self.types.iter().find(|t| t.as_str().as_bytes() == bytes) {
            return Ok(known.clone());
        }
        let text = std::str::from_utf8(bytes).map_err(|_| "event type is not valid UTF-8")?;
        let event_type = EventType::new(text)
            .map_err(|e| format!("stored event type is invalid: {}", e.problem))?;
        if self.types.len() < REMEMBERED_TYPES {
            self.types.push(event_type.clone());
        }
        Ok(event_type)
    }
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
        .stream(bytes(1, "stream id")?)
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
        .event_type(bytes(4, "event type")?)
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
    Ok(RecordedEvent::from_parts(
        position,
        stream_id,
        version,
        event_id,
        event_type,
        schema_version,
        payload,
        metadata,
        recorded_at,
    ))
}

/// Turns a row of a replay query into a [`ReplayEvent`].
fn replay_event_from_row(row: &Row<'_>, names: &mut Names) -> Result<ReplayEvent, ReadError> {
    let position = u64::try_from(int(row, 0).unwrap_or(-1))
        .map(Position)
        .map_err(|_| corrupt(Position::START, "position is not a positive integer".into()))?;
    let version = u64::try_from(int(row, 1).unwrap_or(0))
        .ok()
        .filter(|v| *v >= 1)
        .ok_or_else(|| corrupt(position, "version is below 1".into()))?;
    let event_type = match row.get_ref(2) {
        Ok(ValueRef::Text(bytes)) => names.event_type(bytes),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_bounds_cover_exactly_the_ids_with_the_prefix() {
        assert_eq!(prefix_bounds("acc_"), ("acc_".into(), Some("acc`".into())));
        assert_eq!(
            prefix_bounds("account-"),
            ("account-".into(), Some("account.".into()))
        );
        assert_eq!(prefix_bounds(""), (String::new(), None));
        assert_eq!(
            prefix_bounds("a\u{D7FF}"),
            ("a\u{D7FF}".into(), Some("a\u{E000}".into()))
        );
        assert_eq!(
            prefix_bounds("a\u{10FFFF}"),
            ("a\u{10FFFF}".into(), Some("b".into()))
        );
        assert_eq!(prefix_bounds("\u{10FFFF}"), ("\u{10FFFF}".into(), None));
    }
}
