//! Creating and migrating a store's schema, safely when many processes
//! open the store at once.
//!
//! Opening takes a transaction-scoped advisory lock keyed by the schema's
//! name, so that two processes starting together migrate one after the
//! other: the second finds the work done. Every migration runs in the same
//! transaction (PostgreSQL's DDL is transactional), so a failure halfway
//! leaves the schema as it was. A schema written by a newer annals, or one
//! that holds tables but is not an annals store, is refused untouched.

use tokio_postgres::Client;

use crate::error::{backend, OpenError};
use crate::name::SchemaName;

/// The SQL of each schema version, oldest first; `__SCHEMA__` stands for
/// the quoted schema name.
const MIGRATIONS: [&str; 2] = [include_str!("schema/v1.sql"), include_str!("schema/v2.sql")];

/// The schema version this build writes: a schema with a higher one is
/// refused, one with a lower one is migrated.
pub const CURRENT_VERSION: u32 = 2;

/// A connection of its own, and the task that drives it: the task ends
/// once the client is dropped.
pub(crate) async fn connect(
    config: &tokio_postgres::Config,
) -> Result<(Client, tokio::task::JoinHandle<()>), tokio_postgres::Error> {
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    let driver = tokio::spawn(async move {
        // The connection's own errors come back to the client's calls.
        let _ = connection.await;
    });
    Ok((client, driver))
}

/// Connects, migrates (or checks) the schema as [`migrate`] does, and
/// lets the connection go.
pub(crate) async fn connect_and_migrate(
    config: &tokio_postgres::Config,
    schema: &SchemaName,
    apply: bool,
) -> Result<u32, OpenError> {
    let (mut client, driver) = connect(config).await.map_err(|e| OpenError::Unavailable {
        source: backend("connecting", e),
    })?;
    let migrated = migrate(&mut client, schema, apply).await;
    drop(client);
    let _ = driver.await;
    migrated
}

/// Brings the schema to [`CURRENT_VERSION`], or checks that it is there
/// when `apply` is false. Returns the version found before.
pub(crate) async fn migrate(
    client: &mut Client,
    schema: &SchemaName,
    apply: bool,
) -> Result<u32, OpenError> {
    let failed = |doing: &'static str| {
        let schema = schema.as_str().to_owned();
        move |e| OpenError::Backend {
            schema: schema.clone(),
            source: backend(doing, e),
        }
    };
    let tx = client
        .transaction()
        .await
        .map_err(failed("starting the migration"))?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext($1))",
        &[&format!("annals schema {}", schema.as_str())],
    )
    .await
    .map_err(failed("taking the migration lock"))?;
    let tables: Vec<String> = tx
        .query(
            "SELECT tablename::text FROM pg_catalog.pg_tables WHERE schemaname = $1",
            &[&schema.as_str()],
        )
        .await
        .map_err(failed("listing the schema's tables"))?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let found = if tables.iter().any(|t| t == "annals_meta") {
        stored_version(&tx, schema).await?
    } else if tables.is_empty() {
        0
    } else {
        return Err(OpenError::NotAnnalsSchema {
            schema: schema.as_str().to_owned(),
            reason: "it holds tables but no annals_meta table",
        });
    };
    if found > CURRENT_VERSION {
        return Err(OpenError::SchemaTooNew {
            schema: schema.as_str().to_owned(),
            found,
            supported: CURRENT_VERSION,
        });
    }
    if found == CURRENT_VERSION {
        return Ok(found);
    }
    if !apply {
        return Err(OpenError::NotMigrated {
            schema: schema.as_str().to_owned(),
            found,
            current: CURRENT_VERSION,
        });
    }
    tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {}", schema.quoted()))
        .await
        .map_err(failed("creating the schema"))?;
    for migration in &MIGRATIONS[found as usize..] {
        tx.batch_execute(&migration.replace("__SCHEMA__", &schema.quoted()))
            .await
            .map_err(failed("migrating the schema"))?;
    }
    tx.commit()
        .await
        .map_err(failed("committing the migration"))?;
    Ok(found)
}

async fn stored_version(
    tx: &tokio_postgres::Transaction<'_>,
    schema: &SchemaName,
) -> Result<u32, OpenError> {
    let not_annals = |reason| OpenError::NotAnnalsSchema {
        schema: schema.as_str().to_owned(),
        reason,
    };
    let rows = tx
        .query(
            &format!(
                "SELECT key::text, value FROM {}.annals_meta",
                schema.quoted()
            ),
            &[],
        )
        .await
        .map_err(|_| not_annals("its annals_meta table is not readable as annals'"))?;
    let value = |key: &str| {
        rows.iter()
            .find(|row| row.try_get::<_, String>(0).is_ok_and(|k| k == key))
            .and_then(|row| row.try_get::<_, String>(1).ok())
    };
    if value("format").as_deref() != Some("annals") {
        return Err(not_annals(
            "its annals_meta table does not say format = annals",
        ));
    }
    value("schema_version")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| not_annals("its annals_meta table has no readable schema_version"))
}

/// Drops the schema and everything in it, over a connection of its own.
pub(crate) async fn drop_schema(
    config: &tokio_postgres::Config,
    schema: &SchemaName,
) -> Result<(), tokio_postgres::Error> {
    let (client, driver) = connect(config).await?;
    let dropped = client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            schema.quoted()
        ))
        .await;
    drop(client);
    let _ = driver.await;
    dropped
}
