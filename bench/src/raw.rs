//! The baseline: raw rusqlite on a table like annals' own, with the same
//! WAL mode and durability, and no framework.

use std::path::Path;

use annals::sqlite::Durability;
use rusqlite::{params, Connection, TransactionBehavior};

use crate::model::BankEvent;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    position    INTEGER PRIMARY KEY,
    stream_id   TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    event_id    BLOB    NOT NULL UNIQUE,
    event_type  TEXT    NOT NULL,
    payload     TEXT    NOT NULL,
    recorded_at INTEGER NOT NULL,
    UNIQUE (stream_id, version)
);";

/// Opens a baseline database with the durability of the run.
pub(crate) fn open(path: &Path, durability: Durability) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let synchronous = match durability {
        Durability::Relaxed => "NORMAL",
        _ => "FULL",
    };
    conn.pragma_update(None, "synchronous", synchronous)?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Inserts one event at `version` of `stream`.
fn insert(
    conn: &Connection,
    stream: &str,
    version: i64,
    event: &BankEvent,
) -> Result<(), rusqlite::Error> {
    let (event_type, payload) = crate::model::encode_raw(event);
    conn.prepare_cached(
        "INSERT INTO events (stream_id, version, event_id, event_type, payload, recorded_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        stream,
        version,
        &uuid::Uuid::now_v7().as_bytes()[..],
        event_type,
        payload,
        now_micros()
    ])?;
    Ok(())
}

/// Reads the stream's version and appends one event after it, in one
/// `IMMEDIATE` transaction.
pub(crate) fn read_version_then_insert(
    conn: &mut Connection,
    stream: &str,
    event: &BankEvent,
) -> Result<(), rusqlite::Error> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: Option<i64> = tx
        .prepare_cached("SELECT max(version) FROM events WHERE stream_id = ?1")?
        .query_row([stream], |r| r.get(0))?;
    insert(&tx, stream, version.unwrap_or(0) + 1, event)?;
    tx.commit()
}

/// Appends one event at a version the caller tracks, in its own transaction.
pub(crate) fn insert_at(
    conn: &mut Connection,
    stream: &str,
    version: i64,
    event: &BankEvent,
) -> Result<(), rusqlite::Error> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    insert(&tx, stream, version, event)?;
    tx.commit()
}
