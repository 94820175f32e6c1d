//! The baseline: raw rusqlite on a table like annals' own, with the same
//! WAL mode and durability, and no framework.
//!
//! In the realistic shape the table has annals' columns and indexes and
//! every row carries the same metadata JSON annals stores; in the small
//! shape it is the table of earlier builds of the bench (no schema version,
//! no metadata, no index beyond the uniqueness constraints), so that their
//! figures can be compared.
//!
//! Durability is matched by `synchronous`: `FULL` for annals' full
//! durability, `NORMAL` for relaxed. Annals' relaxed mode also syncs the
//! WAL every `sync_interval`, which `NORMAL` never does, so the relaxed
//! baseline does a little less work than annals.

mod project;
mod read;

use std::path::Path;

use annals::sqlite::Durability;
use annals::DomainEvent;
use rusqlite::{params, Connection, OpenFlags, TransactionBehavior};

use crate::model::BankEvent;
use crate::shape::Shape;

pub(crate) use project::{
    balance_change, balances_summary, build_balances, RawBalances, CREATE_BALANCES, UPSERT_BALANCE,
};
pub(crate) use read::{Envelope, MetadataColumn, ENVELOPE_COLUMNS};

/// The version of a stream: what a command reads before it appends.
const STREAM_VERSION: &str = "SELECT max(version) FROM events WHERE stream_id = ?1";

/// A baseline database that commands write to.
pub(crate) struct RawLog {
    conn: Connection,
    shape: Shape,
}

impl RawLog {
    /// Opens a baseline database with the durability of the run.
    pub(crate) fn open(
        path: &Path,
        durability: Durability,
        shape: Shape,
    ) -> Result<RawLog, rusqlite::Error> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        let synchronous = match durability {
            Durability::Relaxed => "NORMAL",
            _ => "FULL",
        };
        conn.pragma_update(None, "synchronous", synchronous)?;
        conn.execute_batch(match shape {
            Shape::Realistic => include_str!("schema.sql"),
            Shape::Small => include_str!("schema_small.sql"),
        })?;
        Ok(RawLog { conn, shape })
    }

    /// Reads the stream's version and appends one event after it, in one
    /// `IMMEDIATE` transaction.
    pub(crate) fn read_version_then_insert(
        &mut self,
        stream: &str,
        event: &BankEvent,
    ) -> Result<(), rusqlite::Error> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: Option<i64> = tx
            .prepare_cached(STREAM_VERSION)?
            .query_row([stream], |r| r.get(0))?;
        insert(&tx, self.shape, stream, version.unwrap_or(0) + 1, event)?;
        tx.commit()
    }

    /// Appends one event at a version the caller tracks, in its own
    /// transaction.
    pub(crate) fn insert_at(
        &mut self,
        stream: &str,
        version: i64,
        event: &BankEvent,
    ) -> Result<(), rusqlite::Error> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        insert(&tx, self.shape, stream, version, event)?;
        tx.commit()
    }

    /// Appends one event to each of several streams in one `IMMEDIATE`
    /// transaction, each after its stream's version as read in it: a
    /// multi-stream atomic append done by hand.
    pub(crate) fn append_atomically(
        &mut self,
        events: &[(String, Encoded)],
    ) -> Result<(), rusqlite::Error> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (stream, event) in events {
            let version: Option<i64> = tx
                .prepare_cached(STREAM_VERSION)?
                .query_row([stream], |r| r.get(0))?;
            insert_encoded(&tx, self.shape, stream, version.unwrap_or(0) + 1, event)?;
        }
        tx.commit()
    }

    /// The mean payload and metadata sizes of the stored events.
    pub(crate) fn event_sizes(&self) -> Result<EventSizes, rusqlite::Error> {
        event_sizes(&self.conn, self.shape)
    }

    /// The mean payload and metadata sizes of the stored events of `types`.
    pub(crate) fn event_sizes_of(&self, types: &[&str]) -> Result<EventSizes, rusqlite::Error> {
        event_sizes_of(&self.conn, self.shape, types)
    }
}

pub(crate) fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Inserts one event at `version` of `stream`.
fn insert(
    conn: &Connection,
    shape: Shape,
    stream: &str,
    version: i64,
    event: &BankEvent,
) -> Result<(), rusqlite::Error> {
    let (event_type, payload) = crate::model::encode_raw(event);
    let encoded = Encoded {
        event_type,
        schema_version: event.schema_version(),
        payload,
    };
    insert_encoded(conn, shape, stream, version, &encoded)
}

/// An event as the baseline stores it: its type, schema version and JSON
/// payload, encoded by hand.
pub(crate) struct Encoded {
    pub(crate) event_type: &'static str,
    pub(crate) schema_version: u32,
    pub(crate) payload: String,
}

/// Inserts one encoded event at `version` of `stream`.
fn insert_encoded(
    conn: &Connection,
    shape: Shape,
    stream: &str,
    version: i64,
    event: &Encoded,
) -> Result<(), rusqlite::Error> {
    let Encoded {
        event_type,
        schema_version,
        payload,
    } = event;
    let event_id = uuid::Uuid::now_v7();
    match shape {
        Shape::Realistic => conn
            .prepare_cached(include_str!("insert.sql"))?
            .execute(params![
                stream,
                version,
                &event_id.as_bytes()[..],
                event_type,
                schema_version,
                payload,
                shape.raw_metadata(),
                now_micros()
            ])?,
        Shape::Small => conn
            .prepare_cached(include_str!("insert_small.sql"))?
            .execute(params![
                stream,
                version,
                &event_id.as_bytes()[..],
                event_type,
                payload,
                now_micros()
            ])?,
    };
    Ok(())
}

/// Opens a database to read, as a reader of the log would.
pub(crate) fn open_read_only(path: &Path) -> Result<Connection, rusqlite::Error> {
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
}

/// The mean sizes of the stored events' payload and metadata, in bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct EventSizes {
    pub(crate) payload: f64,
    pub(crate) metadata: f64,
}

impl EventSizes {
    /// Prints the sizes, once per scenario.
    pub(crate) fn report(&self, report: &crate::report::Report) {
        report.size("payload_bytes", format!("{:.0} bytes", self.payload));
        report.size("metadata_bytes", format!("{:.0} bytes", self.metadata));
    }

    /// Whether two logs hold events of the same shape (within two bytes:
    /// amounts and counters differ in length).
    pub(crate) fn matches(&self, other: &EventSizes) -> bool {
        (self.payload - other.payload).abs() <= 2.0 && (self.metadata - other.metadata).abs() <= 2.0
    }
}

/// The mean payload and metadata sizes of the events in `conn`'s log
/// (annals' or the baseline's).
pub(crate) fn event_sizes(conn: &Connection, shape: Shape) -> Result<EventSizes, rusqlite::Error> {
    event_sizes_of(conn, shape, &[])
}

/// The mean payload and metadata sizes of the events of the given types
/// (all events when none is given) in `conn`'s log.
pub(crate) fn event_sizes_of(
    conn: &Connection,
    shape: Shape,
    types: &[&str],
) -> Result<EventSizes, rusqlite::Error> {
    let metadata = match shape {
        Shape::Realistic => "coalesce(avg(length(CAST(metadata AS BLOB))), 0.0)",
        // The small shape's baseline has no metadata column.
        Shape::Small => "0.0",
    };
    let only = if types.is_empty() {
        String::new()
    } else {
        // The types are the bench's own event names: no quoting needed.
        format!(" WHERE event_type IN ('{}')", types.join("', '"))
    };
    conn.query_row(
        &format!(
            "SELECT coalesce(avg(length(CAST(payload AS BLOB))), 0.0), {metadata} FROM events{only}"
        ),
        [],
        |r| {
            Ok(EventSizes {
                payload: r.get(0)?,
                metadata: r.get(1)?,
            })
        },
    )
}
