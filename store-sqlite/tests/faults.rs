//! Bad files, full disks, busy and read-only databases, corrupt rows and
//! shutdown: each gives a typed error, and nothing already stored changes.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Duration;

use annals_core::{
    AppendError, BackendErrorKind, Checkpoint, CheckpointStore, EventStore, EventStoreExt,
    ExpectedVersion, NewEvent, Payload, Position, ReadAll, ReadError, StreamId,
};
use annals_sqlite::{Access, OpenError, SqliteStore};

type TestResult = Result<(), Box<dyn Error>>;

fn event(n: usize) -> NewEvent {
    let payload =
        Payload::from_json(format!(r#"{{"n":{n},"pad":"{}"}}"#, "p".repeat(n % 7))).expect("valid");
    NewEvent::new("Happened", 1, payload).expect("valid")
}

fn stream(id: &str) -> StreamId {
    StreamId::new(id).expect("valid")
}

fn file_bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("file readable")
}

fn backend_kind(error: &AppendError) -> Option<BackendErrorKind> {
    match error {
        AppendError::Backend(e) => Some(e.kind),
        _ => None,
    }
}

async fn store_with_events(path: &Path, count: usize) -> Result<SqliteStore, Box<dyn Error>> {
    let store = SqliteStore::open(path).await?;
    store
        .append_to_stream(
            &stream("account-1"),
            ExpectedVersion::NoStream,
            (0..count).map(event).collect(),
        )
        .await?;
    Ok(store)
}

fn integrity(path: &Path) -> Result<String, rusqlite::Error> {
    rusqlite::Connection::open(path)?.query_row("PRAGMA integrity_check", [], |r| r.get(0))
}

#[tokio::test]
async fn open_fails_with_not_annals_database_on_random_bytes_and_leaves_the_file() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("random.db");
    let bytes: Vec<u8> = (0..8192u32)
        .map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes()[2])
        .collect();
    std::fs::write(&path, &bytes)?;
    let err = SqliteStore::open(&path)
        .await
        .err()
        .ok_or("opened random bytes")?;
    assert!(
        matches!(err, OpenError::NotAnnalsDatabase { .. }),
        "{err:?}"
    );
    assert_eq!(file_bytes(&path), bytes, "the file changed");
    Ok(())
}

#[tokio::test]
async fn open_fails_with_not_annals_database_on_another_apps_sqlite_file() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("other.db");
    {
        let conn = rusqlite::Connection::open(&path)?;
        conn.execute_batch("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO customers (name) VALUES ('x');")?;
    }
    let before = file_bytes(&path);
    let err = SqliteStore::open(&path)
        .await
        .err()
        .ok_or("opened another app's file")?;
    match err {
        OpenError::NotAnnalsDatabase { path: p, reason } => {
            assert_eq!(p, path);
            assert!(reason.contains("no annals metadata"), "{reason}");
        }
        other => panic!("expected NotAnnalsDatabase, got {other:?}"),
    }
    assert_eq!(file_bytes(&path), before, "the file changed");
    Ok(())
}

/// The `-wal` file beside a database file.
fn wal_of(path: &Path) -> std::path::PathBuf {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    wal.into()
}

#[tokio::test]
async fn refusing_a_crashed_apps_file_leaves_it_and_its_wal_byte_identical() -> TestResult {
    let dir = tempfile::tempdir()?;
    let live = dir.path().join("live.db");
    let conn = rusqlite::Connection::open(&live)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.execute_batch(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT);
         INSERT INTO customers (name) VALUES ('x'), ('y');",
    )?;
    // What a crash leaves: the file and a WAL that was never checkpointed.
    let crashed = dir.path().join("crashed.db");
    std::fs::copy(&live, &crashed)?;
    std::fs::copy(wal_of(&live), wal_of(&crashed))?;
    drop(conn);
    let (db_before, wal_before) = (file_bytes(&crashed), file_bytes(&wal_of(&crashed)));
    assert!(!wal_before.is_empty(), "the WAL holds the app's changes");
    let err = SqliteStore::open(&crashed)
        .await
        .err()
        .ok_or("opened a crashed app's file")?;
    assert!(
        matches!(err, OpenError::NotAnnalsDatabase { .. }),
        "{err:?}"
    );
    assert_eq!(file_bytes(&crashed), db_before, "the file changed");
    assert_eq!(
        file_bytes(&wal_of(&crashed)),
        wal_before,
        "the WAL was checkpointed or changed"
    );
    Ok(())
}

#[tokio::test]
async fn open_fails_with_not_annals_database_on_an_empty_file_with_a_user_version() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("claimed.db");
    rusqlite::Connection::open(&path)?.pragma_update(None, "user_version", 7)?;
    let before = file_bytes(&path);
    let err = SqliteStore::open(&path)
        .await
        .err()
        .ok_or("took over another app's file")?;
    match err {
        OpenError::NotAnnalsDatabase { reason, .. } => {
            assert!(reason.contains("user_version"), "{reason}")
        }
        other => panic!("expected NotAnnalsDatabase, got {other:?}"),
    }
    assert_eq!(file_bytes(&path), before, "the file changed");
    Ok(())
}

#[tokio::test]
async fn open_fails_with_not_annals_database_on_a_file_holding_only_a_view() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("view.db");
    rusqlite::Connection::open(&path)?.execute_batch("CREATE VIEW answer AS SELECT 42 AS n;")?;
    let before = file_bytes(&path);
    let err = SqliteStore::open(&path)
        .await
        .err()
        .ok_or("took over a file with a view")?;
    assert!(
        matches!(err, OpenError::NotAnnalsDatabase { .. }),
        "{err:?}"
    );
    assert_eq!(file_bytes(&path), before, "the file changed");
    Ok(())
}

#[tokio::test]
async fn open_fails_with_schema_too_new_and_leaves_the_file() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("newer.db");
    store_with_events(&path, 3).await?.close().await;
    {
        let conn = rusqlite::Connection::open(&path)?;
        conn.execute(
            "UPDATE annals_meta SET value = '99' WHERE key = 'schema_version'",
            [],
        )?;
    }
    let before = file_bytes(&path);
    let err = SqliteStore::open(&path)
        .await
        .err()
        .ok_or("opened a newer file")?;
    assert!(
        matches!(
            err,
            OpenError::SchemaTooNew {
                found: 99,
                supported,
                ..
            } if supported as usize == annals_sqlite::__schema_migrations().len()
        ),
        "{err:?}"
    );
    assert_eq!(file_bytes(&path), before, "the file changed");
    Ok(())
}

#[tokio::test]
async fn open_fails_with_missing_directory() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path: PathBuf = dir.path().join("no/such/dir/events.db");
    let err = SqliteStore::open(&path)
        .await
        .err()
        .ok_or("opened in a missing directory")?;
    assert!(
        matches!(&err, OpenError::MissingDirectory { path: p } if *p == path),
        "{err:?}"
    );
    assert!(!dir.path().join("no").exists(), "the directory was created");
    Ok(())
}

#[tokio::test]
async fn open_fails_with_invalid_options_naming_the_setting() -> TestResult {
    let dir = tempfile::tempdir()?;
    let err = SqliteStore::options()
        .path(dir.path().join("x.db"))
        .read_pool_size(0)
        .open()
        .await
        .err()
        .ok_or("opened with no read connections")?;
    assert!(
        matches!(
            err,
            OpenError::InvalidOptions {
                setting: "read_pool_size",
                ..
            }
        ),
        "{err:?}"
    );
    let err = SqliteStore::options()
        .open()
        .await
        .err()
        .ok_or("opened without a path")?;
    assert!(
        matches!(
            err,
            OpenError::InvalidOptions {
                setting: "path",
                ..
            }
        ),
        "{err:?}"
    );
    // Values past what the pieces holding them can take are refused by
    // name, never a panic.
    let too_large = [
        (
            "queue_capacity",
            SqliteStore::options().queue_capacity(usize::MAX),
        ),
        (
            "read_pool_size",
            SqliteStore::options().read_pool_size(usize::MAX),
        ),
        (
            "busy_timeout",
            SqliteStore::options().busy_timeout(Duration::from_secs(30 * 86_400)),
        ),
    ];
    for (name, options) in too_large {
        let err = options
            .path(dir.path().join("x.db"))
            .open()
            .await
            .err()
            .ok_or(name)?;
        assert!(
            matches!(&err, OpenError::InvalidOptions { setting, .. } if *setting == name),
            "{err:?}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relaxed_store_with_a_sync_interval_too_long_to_reach_keeps_serving() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::options()
        .path(dir.path().join("events.db"))
        .durability(annals_sqlite::Durability::Relaxed)
        .sync_interval(Duration::MAX)
        .open()
        .await?;
    for n in 0..3 {
        store
            .append_to_stream(&stream("a-1"), ExpectedVersion::Any, vec![event(n)])
            .await?;
    }
    store.close().await;
    Ok(())
}

/// A file as schema `version` left it, with one event.
fn file_at_schema_version(path: &Path, version: usize) -> TestResult {
    let conn = rusqlite::Connection::open(path)?;
    conn.pragma_update(None, "application_id", 0x616E_6E6C)?;
    for migration in &annals_sqlite::__schema_migrations()[..version] {
        conn.execute_batch(migration)?;
    }
    conn.execute(
        "INSERT INTO events (position, stream_id, version, event_id, event_type, schema_version, payload, metadata, recorded_at)
         VALUES (1, 'account-1', 1, ?1, 'Opened', 1, '{\"owner\":\"ada\"}', NULL, 0)",
        [&uuid::Uuid::now_v7().as_bytes()[..]],
    )?;
    Ok(())
}

/// Opens an older file, checks its event is kept and the store appends,
/// closes it, and returns the schema version the file was left at.
async fn migrated_schema_version(path: &Path) -> Result<String, Box<dyn Error>> {
    let store = SqliteStore::open(path).await?;
    let events = store.read_stream_to_end(&stream("account-1")).await?;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].payload.as_str(), r#"{"owner":"ada"}"#);
    store
        .append_to_stream(
            &stream("account-1"),
            ExpectedVersion::Exact(1),
            vec![event(1)],
        )
        .await?;
    store.close().await;
    let conn = rusqlite::Connection::open(path)?;
    Ok(conn.query_row(
        "SELECT value FROM annals_meta WHERE key = 'schema_version'",
        [],
        |r| r.get(0),
    )?)
}

#[tokio::test]
async fn older_schema_is_migrated_and_its_events_kept() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("v1.db");
    file_at_schema_version(&path, 1)?;
    assert_eq!(
        migrated_schema_version(&path).await?,
        annals_sqlite::__schema_migrations().len().to_string(),
        "migrated to the newest schema"
    );
    Ok(())
}

#[tokio::test]
async fn version_3_file_migrates_to_the_newest_keeping_its_events_and_takes_checkpoints(
) -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("v3.db");
    file_at_schema_version(&path, 3)?;
    assert_eq!(migrated_schema_version(&path).await?, "5");
    let store = SqliteStore::open(&path).await?;
    let saved = Checkpoint {
        position: Position(2),
        event_id: None,
        version: 1,
    };
    store.save_checkpoint("balances", saved, &[]).await?;
    assert_eq!(store.load_checkpoint("balances").await?, Some(saved));
    assert_eq!(
        store.read_stream_to_end(&stream("account-1")).await?.len(),
        2
    );
    Ok(())
}

#[tokio::test]
async fn append_fails_with_storage_full_and_writes_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("full.db");
    store_with_events(&path, 1).await?.close().await;
    let size = std::fs::metadata(&path)?.len();
    let store = SqliteStore::options()
        .path(&path)
        .max_size(Some(size + 16 * 4096))
        .open()
        .await?;
    let s = stream("account-2");
    let mut acked = Vec::new();
    let full = loop {
        assert!(acked.len() < 10_000, "the size limit was never reached");
        let big = NewEvent::new(
            "Big",
            1,
            Payload::from_json(format!("\"{}\"", "b".repeat(3000)))?,
        )?;
        match store
            .append_to_stream(&s, ExpectedVersion::Any, vec![big])
            .await
        {
            Ok(outcome) => acked.extend(outcome.into_events()),
            Err(e) => break e,
        }
    };
    assert_eq!(
        backend_kind(&full),
        Some(BackendErrorKind::StorageFull),
        "{full:?}"
    );
    let head = store.head().await?;
    assert_eq!(
        Some(head),
        acked.last().map(|e| e.position),
        "the failed append moved the head"
    );
    assert_eq!(
        store.read_stream_to_end(&s).await?,
        acked,
        "acknowledged events changed"
    );
    // Without the limit, appends succeed again.
    store.close().await;
    let store = SqliteStore::open(&path).await?;
    let more = store
        .append_to_stream(
            &s,
            ExpectedVersion::Exact(acked.len() as u64),
            vec![event(9)],
        )
        .await?;
    assert_eq!(more.events()[0].version, acked.len() as u64 + 1);
    store.close().await;
    assert_eq!(integrity(&path)?, "ok");
    Ok(())
}

#[tokio::test]
async fn append_fails_with_read_only_and_reads_still_work() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("ro.db");
    store_with_events(&path, 3).await?.close().await;
    let before = file_bytes(&path);
    let store = SqliteStore::options()
        .path(&path)
        .access(Access::ReadOnly)
        .open()
        .await?;
    let err = store
        .append_to_stream(&stream("account-1"), ExpectedVersion::Any, vec![event(1)])
        .await
        .unwrap_err();
    assert_eq!(
        backend_kind(&err),
        Some(BackendErrorKind::ReadOnly),
        "{err:?}"
    );
    assert_eq!(
        store.read_stream_to_end(&stream("account-1")).await?.len(),
        3
    );
    assert_eq!(store.head().await?, Position(3));
    drop(store);
    assert_eq!(
        file_bytes(&path),
        before,
        "a read-only store changed the file"
    );
    let err = SqliteStore::options()
        .path(dir.path().join("absent.db"))
        .access(Access::ReadOnly)
        .open()
        .await
        .err()
        .ok_or("opened a missing file read-only")?;
    assert!(matches!(err, OpenError::MissingFile { .. }), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn append_fails_with_busy_while_another_process_holds_the_write_lock() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("busy.db");
    store_with_events(&path, 1).await?.close().await;
    let store = SqliteStore::options()
        .path(&path)
        .busy_timeout(Duration::from_millis(100))
        .open()
        .await?;
    let other = rusqlite::Connection::open(&path)?;
    other.execute_batch("BEGIN IMMEDIATE")?;
    let err = store
        .append_to_stream(
            &stream("account-1"),
            ExpectedVersion::Exact(1),
            vec![event(1)],
        )
        .await
        .unwrap_err();
    assert_eq!(backend_kind(&err), Some(BackendErrorKind::Busy), "{err:?}");
    assert!(BackendErrorKind::Busy.is_retryable());
    other.execute_batch("ROLLBACK")?;
    let retried = store
        .append_to_stream(
            &stream("account-1"),
            ExpectedVersion::Exact(1),
            vec![event(1)],
        )
        .await?;
    assert_eq!(retried.events()[0].version, 2);
    Ok(())
}

#[tokio::test]
async fn read_of_a_corrupt_row_fails_with_corrupt_and_neighbours_read_fine() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("corrupt.db");
    store_with_events(&path, 2).await?.close().await;
    {
        // Another tool writes a row whose payload is not even UTF-8.
        let conn = rusqlite::Connection::open(&path)?;
        conn.execute(
            "INSERT INTO events (position, stream_id, version, event_id, event_type, schema_version, payload, metadata, recorded_at)
             VALUES (3, 'account-9', 1, ?1, 'Opened', 1, CAST(X'FFFE' AS TEXT), NULL, 0)",
            [&uuid::Uuid::now_v7().as_bytes()[..]],
        )?;
    }
    let store = SqliteStore::open(&path).await?;
    store
        .append_to_stream(
            &stream("account-1"),
            ExpectedVersion::Exact(2),
            vec![event(5)],
        )
        .await?;
    let err = store
        .read_all(ReadAll::after(Position::START))
        .await
        .unwrap_err();
    match err {
        ReadError::Corrupt { position, reason } => {
            assert_eq!(position, Position(3));
            assert!(reason.contains("payload"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(
        store
            .read_all(ReadAll::after(Position::START).limit(2))
            .await?
            .len(),
        2
    );
    assert_eq!(store.read_all(ReadAll::after(Position(3))).await?.len(), 1);
    assert_eq!(
        store.read_stream_to_end(&stream("account-1")).await?.len(),
        3
    );
    Ok(())
}

#[tokio::test]
async fn events_table_refuses_update_and_delete() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("append-only.db");
    store_with_events(&path, 2).await?.close().await;
    let conn = rusqlite::Connection::open(&path)?;
    let update = conn
        .execute("UPDATE events SET payload = '{}' WHERE position = 1", [])
        .unwrap_err();
    assert!(update.to_string().contains("append-only"), "{update}");
    let delete = conn.execute("DELETE FROM events", []).unwrap_err();
    assert!(delete.to_string().contains("append-only"), "{delete}");
    let count: i64 = conn.query_row("SELECT count(*) FROM events", [], |r| r.get(0))?;
    assert_eq!(count, 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_answers_every_queued_append_and_later_calls_fail_with_closed() -> TestResult {
    let store = SqliteStore::open_temporary().await?;
    let mut tasks = Vec::new();
    for n in 0..100 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .append_to_stream(
                    &stream(&format!("queued-{n}")),
                    ExpectedVersion::NoStream,
                    vec![event(n)],
                )
                .await
        }));
    }
    tokio::task::yield_now().await;
    tokio::time::timeout(Duration::from_secs(2), store.close()).await?;
    let (mut done, mut closed) = (0, 0);
    for task in tasks {
        match tokio::time::timeout(Duration::from_secs(2), task).await?? {
            Ok(_) => done += 1,
            Err(e) if backend_kind(&e) == Some(BackendErrorKind::Closed) => closed += 1,
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!(done + closed, 100);
    let later = store
        .append_to_stream(&stream("late-1"), ExpectedVersion::Any, vec![event(0)])
        .await
        .unwrap_err();
    assert_eq!(backend_kind(&later), Some(BackendErrorKind::Closed));
    let read = store.head().await.unwrap_err();
    assert!(matches!(read, ReadError::Backend(e) if e.kind == BackendErrorKind::Closed));
    Ok(())
}

#[tokio::test]
async fn dropped_store_releases_the_file_for_a_new_store() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("reopen.db");
    for round in 0..3u64 {
        let store = SqliteStore::open(&path).await?;
        store
            .append_to_stream(
                &stream("account-1"),
                ExpectedVersion::Exact(round),
                vec![event(0)],
            )
            .await?;
        drop(store);
    }
    let store = SqliteStore::open(&path).await?;
    assert_eq!(store.stream_version(&stream("account-1")).await?, Some(3));
    Ok(())
}
