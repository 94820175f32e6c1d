//! Faults a PostgreSQL store meets in production, each with the typed error
//! the store promises and nothing stored lost or changed: a server that is
//! not there, a connection lost mid-append (before and after the server
//! committed), a statement timeout, an exhausted pool, and schemas that are
//! not the store's to touch.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use annals_core::prelude::*;
use annals_core::{
    AppendError, AppendRequest, BackendErrorKind, ExpectedVersion, NewEvent, Payload, Position,
    ReadAll, ReadError, StreamId,
};
use annals_postgres::testing::{unique_schema, url_or_skip, Schemas};
use annals_postgres::tokio_postgres::Client;
use annals_postgres::{OpenError, PostgresOptions, PostgresStore, SCHEMA_VERSION};
use common::proxy::Proxy;
use common::{raw, TestResult, PATIENCE};

/// A port nothing listens on.
const CLOSED: &str = "postgres://postgres@127.0.0.1:1/test";

fn events(count: usize, label: &str) -> TestResult<Vec<NewEvent>> {
    (0..count)
        .map(|i| {
            let payload = Payload::from_json(format!(r#"{{"label":"{label}","i":{i}}}"#))?;
            Ok(NewEvent::new("Faulted", 1, payload)?)
        })
        .collect()
}

/// A store opened with `options`, its schema, and a stream `name` that
/// holds one event.
async fn seeded(
    schemas: &Schemas,
    options: PostgresOptions,
    name: &str,
) -> TestResult<(PostgresStore, String, StreamId)> {
    let store = schemas.open(options).await?;
    let schema = store.schema().to_owned();
    let stream = StreamId::new(name)?;
    store
        .append_to_stream(&stream, ExpectedVersion::NoStream, events(1, "first")?)
        .await?;
    Ok((store, schema, stream))
}

fn kind_of(result: &Result<impl std::fmt::Debug, AppendError>) -> Option<BackendErrorKind> {
    match result {
        Err(AppendError::Backend(e)) => Some(e.kind),
        _ => None,
    }
}

/// The tables of `schema`, sorted.
async fn tables_of(client: &Client, schema: &str) -> TestResult<Vec<String>> {
    Ok(client
        .query(
            "SELECT tablename::text FROM pg_catalog.pg_tables WHERE schemaname = $1 ORDER BY 1",
            &[&schema],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect())
}

/// Creates, in the store's schema, a function that sleeps `seconds` and
/// returns NULL, for triggers that stall the writer where a test wants it.
async fn create_sleeper(client: &Client, schema: &str, seconds: u32) -> TestResult {
    client
        .batch_execute(&format!(
            "CREATE FUNCTION \"{schema}\".test_sleep() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN PERFORM pg_sleep({seconds}); RETURN NULL; END $$"
        ))
        .await?;
    Ok(())
}

/// Waits until the store's writer sleeps inside a trigger, and returns its
/// process id. `client_ports`, when given, narrows it to connections from
/// those ports.
async fn sleeping_writer(
    client: &Client,
    schema: &str,
    client_ports: Option<Vec<i32>>,
) -> TestResult<i32> {
    let started = Instant::now();
    loop {
        let rows = client
            .query(
                "SELECT pid, client_port, query FROM pg_stat_activity \
                 WHERE application_name = 'annals-writer' AND wait_event = 'PgSleep'",
                &[],
            )
            .await?;
        for row in rows {
            let (pid, port, query): (i32, Option<i32>, String) =
                (row.get(0), row.get(1), row.get(2));
            let ours = match &client_ports {
                Some(ports) => port.is_some_and(|p| ports.contains(&p)),
                None => query.contains(schema),
            };
            if ours {
                return Ok(pid);
            }
        }
        if started.elapsed() > PATIENCE {
            return Err("the writer never reached the sleeping trigger".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn opening_against_a_closed_port_fails_with_unavailable_quickly() {
    let started = Instant::now();
    let opened = PostgresStore::options()
        .url(CLOSED)
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await;
    assert!(
        matches!(&opened, Err(OpenError::Unavailable { source }) if source.kind == BackendErrorKind::Unavailable),
        "{opened:?}"
    );
    // Refused at once; the bound only catches a hang.
    assert!(
        started.elapsed() < PATIENCE,
        "opening took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn bad_schema_names_fail_with_invalid_schema_name_before_connecting() {
    let long = "a".repeat(64);
    for name in [
        "",
        "Orders",
        "1orders",
        "orders-x",
        "a; DROP SCHEMA public",
        "pg_orders",
        "\"q\"",
        &long,
    ] {
        // The URL names a closed port: a name checked after connecting
        // would fail with Unavailable instead.
        let options = PostgresStore::options().url(CLOSED).schema(name);
        let opened = options.clone().connect().await;
        assert!(
            matches!(&opened, Err(OpenError::InvalidSchemaName { name: n, .. }) if n == name),
            "{name:?}: {opened:?}"
        );
        let migrated = options.migrate().await;
        assert!(
            matches!(&migrated, Err(OpenError::InvalidSchemaName { .. })),
            "{name:?}: {migrated:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_lost_while_an_append_inserts_fails_with_outcome_unknown_and_a_retry_writes_once(
) -> TestResult {
    let Some(url) = url_or_skip("connection_lost_while_an_append_inserts") else {
        return Ok(());
    };
    let schemas = Schemas::new(url.clone(), "lost_insert");
    let (store, schema, stream) = seeded(&schemas, schemas.options(), "lost-1").await?;

    let admin = raw(&url).await?;
    create_sleeper(&admin, &schema, 5).await?;
    admin
        .batch_execute(&format!(
            "CREATE TRIGGER test_slow_insert BEFORE INSERT ON \"{schema}\".events \
             FOR EACH STATEMENT EXECUTE FUNCTION \"{schema}\".test_sleep()"
        ))
        .await?;
    let request = AppendRequest::to_stream(
        stream.clone(),
        ExpectedVersion::Exact(1),
        events(3, "lost")?,
    );
    let append = tokio::spawn({
        let (store, request) = (store.clone(), request.clone());
        async move { store.append(request).await }
    });
    let pid = sleeping_writer(&admin, &schema, None).await?;
    admin
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await?;
    let lost = tokio::time::timeout(PATIENCE, append).await??;
    assert_eq!(
        kind_of(&lost),
        Some(BackendErrorKind::OutcomeUnknown),
        "{lost:?}"
    );
    admin
        .batch_execute(&format!(
            "DROP TRIGGER test_slow_insert ON \"{schema}\".events"
        ))
        .await?;

    // The insert never committed: the retry commits it now, once.
    let retried = store.append(request.clone()).await?;
    let positions: Vec<u64> = retried.events().iter().map(|e| e.position.0).collect();
    assert_eq!(positions, [2, 3, 4]);
    let again = store.append(request.clone()).await?;
    assert_eq!(
        again, retried,
        "a second retry did not return the first result"
    );
    let stored = store.read_stream_to_end(&stream).await?;
    let ids: Vec<_> = stored.iter().map(|e| e.event_id).collect();
    let sent: Vec<_> = request.events().map(NewEvent::event_id).collect();
    assert_eq!(
        &ids[1..],
        &sent[..],
        "the stream does not hold the append exactly once"
    );
    let log = annals_core::testkit::read_log(&store).await?;
    annals_core::testkit::assert_no_gaps(&log, "after a lost connection and a retry");
    assert_eq!(log.len(), 4);
    schemas.drop_all().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_lost_after_the_commit_fails_with_outcome_unknown_and_a_retry_returns_the_original(
) -> TestResult {
    let Some(url) = url_or_skip("connection_lost_after_the_commit") else {
        return Ok(());
    };
    let Some((proxy, through_proxy)) = Proxy::in_front_of(&url).await? else {
        eprintln!("the test server is not on TCP: skipping connection_lost_after_the_commit");
        return Ok(());
    };
    let schemas = Schemas::new(url.clone(), "lost_commit");
    let (store, schema, stream) = seeded(
        &schemas,
        schemas.options().url(through_proxy),
        "committed-1",
    )
    .await?;

    // A deferred trigger runs inside COMMIT: the writer waits there while
    // the proxy goes deaf; the server then commits, and the reply never
    // arrives.
    let admin = raw(&url).await?;
    create_sleeper(&admin, &schema, 1).await?;
    admin
        .batch_execute(&format!(
            "CREATE CONSTRAINT TRIGGER test_slow_commit AFTER INSERT ON \"{schema}\".events \
             DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION \"{schema}\".test_sleep()"
        ))
        .await?;
    let request = AppendRequest::to_stream(
        stream.clone(),
        ExpectedVersion::Exact(1),
        events(2, "late")?,
    );
    let sent: Vec<uuid::Uuid> = request.events().map(|e| *e.event_id().as_uuid()).collect();
    let append = tokio::spawn({
        let (store, request) = (store.clone(), request.clone());
        async move { store.append(request).await }
    });
    sleeping_writer(&admin, &schema, Some(proxy.server_side_ports())).await?;
    proxy.go_deaf();
    common::eventually("the server committed the append", || {
        let (admin, sent, schema) = (&admin, &sent, &schema);
        async move {
            let row = admin
                .query_one(
                    &format!("SELECT count(*) FROM \"{schema}\".events WHERE event_id = ANY($1)"),
                    &[sent],
                )
                .await?;
            Ok(row.get::<_, i64>(0) == 2)
        }
    })
    .await?;
    proxy.cut();
    let lost = tokio::time::timeout(PATIENCE, append).await??;
    assert_eq!(
        kind_of(&lost),
        Some(BackendErrorKind::OutcomeUnknown),
        "{lost:?}"
    );
    admin
        .batch_execute(&format!(
            "DROP TRIGGER test_slow_commit ON \"{schema}\".events"
        ))
        .await?;

    // It did commit: the retry writes nothing and returns what was stored.
    let retried = store.append(request.clone()).await?;
    let stored = store.read_stream_to_end(&stream).await?;
    assert_eq!(stored.len(), 3, "the retry wrote the append a second time");
    assert_eq!(
        retried.events(),
        &stored[1..],
        "the retry returned another result"
    );
    let log = annals_core::testkit::read_log(&store).await?;
    annals_core::testkit::assert_no_gaps(&log, "after a lost commit reply and a retry");
    schemas.drop_all().await;
    drop(proxy);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_waiting_on_a_held_head_lock_fails_with_timeout_and_appends_resume_after(
) -> TestResult {
    let Some(url) = url_or_skip("an_append_waiting_on_a_held_head_lock_fails_with_timeout") else {
        return Ok(());
    };
    let schemas = Schemas::new(url.clone(), "timeout");
    let (store, schema, stream) = seeded(
        &schemas,
        schemas
            .options()
            .statement_timeout(Duration::from_millis(200)),
        "timed-1",
    )
    .await?;

    let holder = raw(&url).await?;
    holder
        .batch_execute(&format!(
            "BEGIN; UPDATE \"{schema}\".log_head SET position = position WHERE one"
        ))
        .await?;
    let timed_out = tokio::time::timeout(
        PATIENCE,
        store.append_to_stream(&stream, ExpectedVersion::Exact(1), events(2, "late")?),
    )
    .await?;
    assert_eq!(
        kind_of(&timed_out),
        Some(BackendErrorKind::Timeout),
        "{timed_out:?}"
    );
    assert_eq!(
        store.read_stream_to_end(&stream).await?.len(),
        1,
        "a timed-out append wrote"
    );
    holder.batch_execute("ROLLBACK").await?;

    let outcome = store
        .append_to_stream(&stream, ExpectedVersion::Exact(1), events(2, "after")?)
        .await?;
    assert_eq!(outcome.last_position(), Some(Position(3)));
    schemas.drop_all().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_finding_every_pooled_connection_busy_fails_with_busy_after_the_wait() -> TestResult
{
    let Some(url) = url_or_skip("a_read_finding_every_pooled_connection_busy") else {
        return Ok(());
    };
    let schemas = Schemas::new(url.clone(), "pool");
    let (store, schema, stream) = seeded(
        &schemas,
        schemas
            .options()
            .pool_size(1)
            .pool_wait(Duration::from_millis(200)),
        "pooled-1",
    )
    .await?;

    // A lock on the events table blocks the next read on the only pooled
    // connection, and keeps that connection busy.
    let locker = raw(&url).await?;
    locker
        .batch_execute(&format!(
            "BEGIN; LOCK TABLE \"{schema}\".events IN ACCESS EXCLUSIVE MODE"
        ))
        .await?;
    let blocked = tokio::spawn({
        let (store, stream) = (store.clone(), stream.clone());
        async move { store.read_stream_to_end(&stream).await }
    });
    common::eventually("a pooled connection waits on the lock", || {
        let (locker, schema) = (&locker, &schema);
        async move {
            let rows = locker
                .query(
                    "SELECT 1 FROM pg_stat_activity WHERE application_name = 'annals' \
                     AND wait_event_type = 'Lock' AND strpos(query, $1) > 0",
                    &[schema],
                )
                .await?;
            Ok(!rows.is_empty())
        }
    })
    .await?;

    let started = Instant::now();
    let busy =
        tokio::time::timeout(PATIENCE, store.read_all(ReadAll::after(Position::START))).await?;
    assert!(
        matches!(&busy, Err(ReadError::Backend(e)) if e.kind == BackendErrorKind::Busy),
        "{busy:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "the read gave up before the pool wait"
    );
    locker.batch_execute("ROLLBACK").await?;
    let read = tokio::time::timeout(PATIENCE, blocked).await???;
    assert_eq!(read.len(), 1);
    assert_eq!(store.read_stream_to_end(&stream).await?.len(), 1);
    schemas.drop_all().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_of_foreign_tables_fails_with_not_annals_schema_and_is_left_untouched(
) -> TestResult {
    let Some(url) = url_or_skip("a_schema_of_foreign_tables_fails_with_not_annals_schema") else {
        return Ok(());
    };
    let admin = raw(&url).await?;
    let schema = unique_schema("foreign");
    admin
        .batch_execute(&format!(
            "CREATE SCHEMA \"{schema}\"; \
             CREATE TABLE \"{schema}\".orders (id int PRIMARY KEY, note text); \
             INSERT INTO \"{schema}\".orders VALUES (1, 'keep me')"
        ))
        .await?;
    let options = PostgresStore::options().url(url.clone()).schema(&schema);
    let opened = options.clone().connect().await;
    assert!(
        matches!(&opened, Err(OpenError::NotAnnalsSchema { schema: s, .. }) if *s == schema),
        "{opened:?}"
    );
    let migrated = options.migrate().await;
    assert!(
        matches!(&migrated, Err(OpenError::NotAnnalsSchema { .. })),
        "{migrated:?}"
    );
    assert_eq!(tables_of(&admin, &schema).await?, ["orders"]);
    let note: String = admin
        .query_one(
            &format!("SELECT note FROM \"{schema}\".orders WHERE id = 1"),
            &[],
        )
        .await?
        .get(0);
    assert_eq!(note, "keep me");
    let functions: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
             WHERE n.nspname = $1",
            &[&schema],
        )
        .await?
        .get(0);
    assert_eq!(functions, 0, "a function was created in a foreign schema");
    admin
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_from_a_newer_annals_fails_with_schema_too_new_and_is_left_untouched() -> TestResult
{
    let Some(url) = url_or_skip("a_schema_from_a_newer_annals_fails_with_schema_too_new") else {
        return Ok(());
    };
    let schemas = Schemas::new(url.clone(), "too_new");
    let store = schemas.store().await?;
    let schema = store.schema().to_owned();
    store
        .append_to_stream(
            &StreamId::new("kept-1")?,
            ExpectedVersion::NoStream,
            events(2, "kept")?,
        )
        .await?;
    store.close().await;
    let admin = raw(&url).await?;
    admin
        .batch_execute(&format!(
            "UPDATE \"{schema}\".annals_meta SET value = '99' WHERE key = 'schema_version'"
        ))
        .await?;
    let tables = tables_of(&admin, &schema).await?;

    let options = schemas.options().schema(&schema);
    let opened = options.clone().connect().await;
    assert!(
        matches!(
            &opened,
            Err(OpenError::SchemaTooNew { schema: s, found: 99, supported }) if *s == schema && *supported == SCHEMA_VERSION
        ),
        "{opened:?}"
    );
    let migrated = options.migrate().await;
    assert!(
        matches!(&migrated, Err(OpenError::SchemaTooNew { found: 99, .. })),
        "{migrated:?}"
    );
    assert_eq!(tables_of(&admin, &schema).await?, tables);
    let row = admin
        .query_one(
            &format!(
                "SELECT (SELECT value FROM \"{schema}\".annals_meta WHERE key = 'schema_version'), \
                 (SELECT count(*) FROM \"{schema}\".events)"
            ),
            &[],
        )
        .await?;
    assert_eq!(row.get::<_, String>(0), "99");
    assert_eq!(row.get::<_, i64>(1), 2);
    schemas.drop_all().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_schema_with_migrations_off_fails_with_not_migrated_until_migrate_runs(
) -> TestResult {
    let Some(url) = url_or_skip("a_missing_schema_with_migrations_off_fails_with_not_migrated")
    else {
        return Ok(());
    };
    let schemas = Schemas::new(url.clone(), "not_migrated");
    let options = schemas.options().migrate_on_open(false);
    let opened = options.clone().connect().await;
    let Err(OpenError::NotMigrated {
        schema,
        found: 0,
        current: SCHEMA_VERSION,
    }) = opened
    else {
        return Err(format!("opening an unmigrated schema gave {opened:?}").into());
    };
    let admin = raw(&url).await?;
    let exists: bool = admin
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            &[&schema],
        )
        .await?
        .get(0);
    assert!(!exists, "refusing to migrate created the schema");

    assert_eq!(
        options.migrate().await?,
        0,
        "migrate did not start from nothing"
    );
    assert_eq!(
        options.migrate().await?,
        SCHEMA_VERSION,
        "a second migrate did not find the work done"
    );
    let store = schemas.open(options).await?;
    store
        .append_to_stream(
            &StreamId::new("migrated-1")?,
            ExpectedVersion::NoStream,
            events(1, "m")?,
        )
        .await?;
    assert_eq!(store.head().await?, Position(1));
    schemas.drop_all().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_stores_opening_one_fresh_schema_at_once_all_succeed_and_share_it() -> TestResult {
    let Some(url) = url_or_skip("eight_stores_opening_one_fresh_schema_at_once") else {
        return Ok(());
    };
    let schemas = Arc::new(Schemas::new(url.clone(), "open_race"));
    let options = schemas.options();
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let opening: Vec<_> = (0..8)
        .map(|_| {
            let (schemas, options, barrier) =
                (Arc::clone(&schemas), options.clone(), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                schemas.open(options).await
            })
        })
        .collect();
    let mut stores = Vec::new();
    for opened in opening {
        // Every open succeeds: one migrated, the others found it done.
        stores.push(tokio::time::timeout(PATIENCE, opened).await???);
    }
    let first = &stores[0];
    let schema = first.schema().to_owned();
    first
        .append_to_stream(
            &StreamId::new("shared-1")?,
            ExpectedVersion::NoStream,
            events(2, "s")?,
        )
        .await?;
    for store in &stores {
        assert_eq!(store.head().await?, Position(2), "a store sees another log");
    }
    let admin = raw(&url).await?;
    let row = admin
        .query_one(
            &format!(
                "SELECT (SELECT count(*) FROM \"{schema}\".log_head), \
                 (SELECT count(*) FROM \"{schema}\".annals_meta)"
            ),
            &[],
        )
        .await?;
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (1, 2));
    schemas.drop_all().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_table_refuses_update_delete_and_truncate() -> TestResult {
    let Some(url) = url_or_skip("the_events_table_refuses_update_delete_and_truncate") else {
        return Ok(());
    };
    let schemas = Schemas::new(url.clone(), "append_only");
    let store = schemas.store().await?;
    let schema = store.schema().to_owned();
    store
        .append_to_stream(
            &StreamId::new("kept-1")?,
            ExpectedVersion::NoStream,
            events(3, "k")?,
        )
        .await?;
    let before = annals_core::testkit::read_log(&store).await?;
    let admin = raw(&url).await?;
    for statement in [
        format!("UPDATE \"{schema}\".events SET payload = '{{}}' WHERE position = 2"),
        format!("UPDATE \"{schema}\".events SET position = position + 10"),
        format!("DELETE FROM \"{schema}\".events WHERE position = 3"),
        format!("TRUNCATE \"{schema}\".events"),
    ] {
        let refused = admin.batch_execute(&statement).await;
        let message = refused
            .as_ref()
            .err()
            .and_then(|e| e.as_db_error())
            .map(|e| e.message().to_owned());
        assert_eq!(
            message.as_deref(),
            Some("annals events are append-only"),
            "{statement}: {refused:?}"
        );
    }
    assert_eq!(annals_core::testkit::read_log(&store).await?, before);
    schemas.drop_all().await;
    Ok(())
}
