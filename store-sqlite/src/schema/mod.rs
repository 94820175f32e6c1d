//! Opening connections, recognising annals files, and migrating older ones.
//!
//! A file is inspected before anything is written to it, through a
//! read-only connection: a read-write connection, even one that writes
//! nothing, checkpoints a WAL file into the main file when it closes, which
//! would rewrite another application's crashed database. A file that is not
//! an annals database, or one written by a newer annals, is refused and left
//! byte for byte as it was (its `-wal` too). Only then is it opened for
//! writing, WAL mode switched on and the schema created or brought up to
//! date, inside one write transaction, so that two processes opening a new
//! file at once cannot both create it.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::error::{backend, OpenError};
use crate::options::{Durability, SqliteOptions};

/// The newest schema version this code writes and reads.
pub(crate) const CURRENT: u32 = 5;

/// Migration `i` takes a file from version `i` to `i + 1`.
const MIGRATIONS: [&str; CURRENT as usize] = [
    include_str!("v1.sql"),
    include_str!("v2.sql"),
    include_str!("v3.sql"),
    include_str!("v4.sql"),
    include_str!("v5.sql"),
];

/// `PRAGMA application_id` of annals files: "annl".
const APPLICATION_ID: i32 = 0x616E_6E6C;

/// What an inspected file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    /// No tables: a new or empty file.
    Empty,
    /// An annals database at this schema version.
    Annals(u32),
}

/// Opens the write connection: checks the file, switches on WAL, sets the
/// durability, and creates or migrates the schema.
pub(crate) fn open_writer(options: &SqliteOptions, path: &Path) -> Result<Connection, OpenError> {
    let failed = |doing: &str, e: rusqlite::Error| OpenError::Backend {
        path: path.to_path_buf(),
        source: backend(doing, e),
    };
    let found = if path.exists() {
        let inspector = open_reader(options, path).map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::NotADatabase) => OpenError::NotAnnalsDatabase {
                path: path.to_path_buf(),
                reason: "the file is not a SQLite database",
            },
            _ => failed("opening the file to inspect it", e),
        })?;
        inspect(&inspector, path)?
    } else {
        Found::Empty
    };
    check_not_newer(found, path)?;
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| failed("opening", e))?;
    conn.busy_timeout(options.busy_timeout)
        .map_err(|e| failed("setting the busy timeout", e))?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(|e| failed("switching to WAL mode", e))?;
    configure_writer(&conn, options).map_err(|e| failed("configuring the connection", e))?;
    if found != Found::Annals(CURRENT) {
        migrate(conn, path)
    } else {
        Ok(conn)
    }
}

/// Reopens the write connection of a file that was opened before: no
/// inspection or migration, only the connection settings.
pub(crate) fn reopen_writer(
    options: &SqliteOptions,
    path: &Path,
) -> Result<Connection, rusqlite::Error> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(options.busy_timeout)?;
    configure_writer(&conn, options)?;
    Ok(conn)
}

fn configure_writer(conn: &Connection, options: &SqliteOptions) -> Result<(), rusqlite::Error> {
    keep_plans(conn)?;
    let synchronous = match options.durability {
        Durability::Relaxed => "NORMAL",
        _ => "FULL",
    };
    conn.pragma_update(None, "synchronous", synchronous)?;
    // Savepoints keep their undo pages in memory, not in a temporary file.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // Keep the WAL file from staying large after a burst of writes.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    if let Some(bytes) = options.max_size {
        let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
        let pages = i64::try_from(bytes).unwrap_or(i64::MAX) / page_size.max(1);
        conn.pragma_update(None, "max_page_count", pages.max(1))?;
    }
    Ok(())
}

/// Opens a read-only connection for the read pool.
pub(crate) fn open_reader(
    options: &SqliteOptions,
    path: &Path,
) -> Result<Connection, rusqlite::Error> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(options.busy_timeout)?;
    keep_plans(&conn)?;
    Ok(conn)
}

/// Keeps cached statements' plans across executions. Without it, a
/// statement whose `LIMIT` is a bound parameter is compiled again at every
/// execution (the bundled SQLite's STAT4 lets bound values pick plans), which
/// costs more than the query itself for short reads.
///
/// Log reads build their SQL by the filter's shape, so the statement cache
/// holds more than the default 16 statements.
fn keep_plans(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// Checks a file opened read-only is an annals database this code can read.
pub(crate) fn check_readable(conn: &Connection, path: &Path) -> Result<(), OpenError> {
    match inspect(conn, path)? {
        Found::Empty => Err(OpenError::NotAnnalsDatabase {
            path: path.to_path_buf(),
            reason: "the file holds no tables",
        }),
        found => check_not_newer(found, path),
    }
}

fn check_not_newer(found: Found, path: &Path) -> Result<(), OpenError> {
    match found {
        Found::Annals(version) if version > CURRENT => Err(OpenError::SchemaTooNew {
            path: path.to_path_buf(),
            found: version,
            supported: CURRENT,
        }),
        _ => Ok(()),
    }
}

/// Tells what a file holds, reading only.
fn inspect(conn: &Connection, path: &Path) -> Result<Found, OpenError> {
    let not_annals = |reason: &'static str| OpenError::NotAnnalsDatabase {
        path: path.to_path_buf(),
        reason,
    };
    let failed = |e: rusqlite::Error| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => not_annals("the file is not a SQLite database"),
        _ => OpenError::Backend {
            path: path.to_path_buf(),
            source: backend("reading the schema", e),
        },
    };
    let application_id: i32 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .map_err(failed)?;
    let user_version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(failed)?;
    // Every object: tables, views, indexes, triggers.
    let objects: Vec<(String, String)> = conn
        .prepare(include_str!("objects.sql"))
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .map_err(failed)?;
    if application_id != 0 && application_id != APPLICATION_ID {
        return Err(not_annals(
            "it belongs to another application (application_id)",
        ));
    }
    if objects.is_empty() {
        // annals never sets `user_version`: an empty file that has one was
        // claimed by another application.
        if user_version != 0 {
            return Err(not_annals(
                "it belongs to another application (user_version)",
            ));
        }
        return Ok(Found::Empty);
    }
    if !objects
        .iter()
        .any(|(kind, name)| kind == "table" && name == "annals_meta")
    {
        return Err(not_annals("it holds a schema but no annals metadata"));
    }
    let meta = |key: &str| -> Result<Option<String>, OpenError> {
        conn.query_row("SELECT value FROM annals_meta WHERE key = ?1", [key], |r| {
            r.get(0)
        })
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(failed(e)),
        })
    };
    if meta("format")?.as_deref() != Some("annals") {
        return Err(not_annals("its metadata does not name the annals format"));
    }
    let version = meta("schema_version")?
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|v| *v >= 1)
        .ok_or_else(|| not_annals("its schema version is missing or unreadable"))?;
    Ok(Found::Annals(version))
}

/// Creates the schema or brings it up to date, in one write transaction.
fn migrate(mut conn: Connection, path: &Path) -> Result<Connection, OpenError> {
    let failed = |doing: &str, e: rusqlite::Error| OpenError::Backend {
        path: path.to_path_buf(),
        source: backend(doing, e),
    };
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| failed("starting the migration", e))?;
    // Inspected again under the write lock: another process may have
    // created or migrated the file since the first look.
    let from = match inspect(&tx, path)? {
        Found::Empty => {
            tx.pragma_update(None, "application_id", APPLICATION_ID)
                .map_err(|e| failed("marking the file as annals", e))?;
            0
        }
        Found::Annals(version) => version,
    };
    check_not_newer(Found::Annals(from), path)?;
    for (version, sql) in MIGRATIONS.iter().enumerate().skip(from as usize) {
        tracing::info!(path = %path.display(), to = version + 1, "migrating the annals schema");
        tx.execute_batch(sql)
            .map_err(|e| failed("migrating the schema", e))?;
    }
    tx.commit()
        .map_err(|e| failed("committing the migration", e))?;
    Ok(conn)
}

/// The SQL of the schema at each version, for tests that build old files.
#[doc(hidden)]
pub fn migrations() -> &'static [&'static str] {
    &MIGRATIONS
}
