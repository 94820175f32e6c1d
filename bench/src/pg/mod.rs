//! The scenarios on PostgreSQL (`--store postgres`): annals'
//! `PostgresStore` beside raw tokio-postgres doing the same inserts and
//! selects with no framework.
//!
//! Each run makes two fresh schemas on the server, named after the process
//! and the time: one for annals' store, one for the baseline's table (the
//! same columns, constraints and category index as annals' `events`, with
//! positions from an identity column instead of annals' head lock), and
//! drops both when it ends, failed or not. The read scenarios fill annals'
//! log and copy it row for row into the baseline's table, and both tables
//! are vacuumed and analysed before either side reads, so that both read the
//! same rows laid out alike.
//!
//! Durability is the server's (`synchronous_commit`, printed once): the
//! same for both sides.

mod append;
mod read;
mod rebuild;

use std::error::Error;
use std::future::Future;
use std::sync::Arc;

use annals::postgres::tokio_postgres::{self, Client, Row, Statement};
use annals::postgres::PostgresStore;
use annals::DomainEvent;

use crate::model::{decode_raw, encode_raw, BankEvent};
use crate::raw::{now_micros, Envelope, EventSizes, MetadataColumn};
use crate::report::Report;
use crate::shape::{RawMetadata, Shape};
use crate::Settings;

/// The scenarios that run on PostgreSQL.
pub(crate) const SCENARIOS: [&str; 5] =
    ["append-seq", "append-concurrent", "load", "scan", "rebuild"];

/// Runs one scenario on PostgreSQL, in fresh schemas that are dropped
/// when it ends.
pub(crate) async fn run(
    scenario: &str,
    settings: Settings,
    report: &Report,
) -> Result<(), Box<dyn Error>> {
    let run = PgRun::open(&settings).await?;
    let result = match scenario {
        "append-seq" => append::sequential(&run, settings, report).await,
        "append-concurrent" => append::concurrent(&run, settings, report).await,
        "load" => read::load(&run, settings, report).await,
        "scan" => read::scan(&run, settings, report).await,
        "rebuild" => rebuild::rebuild(&run, settings, report).await,
        other => Err(format!("{other} does not run on PostgreSQL").into()),
    };
    let dropped = run.finish().await;
    result.and(dropped)
}

/// The two sides of one run: annals' store in a schema of its own, and the
/// baseline's connection and schema.
pub(crate) struct PgRun {
    pub(crate) store: PostgresStore,
    /// The baseline's first connection; [`PgRun::connect`] opens more.
    pub(crate) raw: Client,
    url: &'static str,
    ours: String,
    theirs: String,
}

impl PgRun {
    /// Makes both schemas and connects both sides.
    async fn open(settings: &Settings) -> Result<PgRun, Box<dyn Error>> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_micros();
        let base = format!("annals_bench_{}_{stamp}", std::process::id());
        let (ours, theirs) = (format!("{base}_ours"), format!("{base}_raw"));
        let raw = connect(settings.pg_url).await?;
        raw.batch_execute(&in_schema(include_str!("schema.sql"), &theirs))
            .await?;
        let store = PostgresStore::options()
            .url(settings.pg_url)
            .schema(ours.as_str())
            .connect()
            .await;
        let store = match store {
            Ok(store) => store,
            Err(e) => {
                drop_schema(&raw, &theirs).await?;
                return Err(e.into());
            }
        };
        Ok(PgRun {
            store,
            raw,
            url: settings.pg_url,
            ours,
            theirs,
        })
    }

    /// Drops both schemas.
    async fn finish(self) -> Result<(), Box<dyn Error>> {
        let ours = self.store.drop_schema().await;
        drop_schema(&self.raw, &self.theirs).await?;
        Ok(ours?)
    }

    /// Another connection of the baseline.
    pub(crate) async fn connect(&self) -> Result<Client, tokio_postgres::Error> {
        connect(self.url).await
    }

    /// `sql` with the baseline's schema in place of `__SCHEMA__`.
    pub(crate) fn raw_sql(&self, sql: &str) -> String {
        in_schema(sql, &self.theirs)
    }

    /// Prints the server's durability, once per scenario.
    pub(crate) async fn report_durability(&self, report: &Report) -> Result<(), Box<dyn Error>> {
        let row = self.raw.query_one("SHOW synchronous_commit", &[]).await?;
        report.size("synchronous_commit", row.try_get::<_, String>(0)?);
        Ok(())
    }

    /// Copies annals' log into the baseline's table, then vacuums and
    /// analyses both, for the read scenarios.
    pub(crate) async fn copy_log(&self) -> Result<(), Box<dyn Error>> {
        let copy = self
            .raw_sql(include_str!("copy_log.sql"))
            .replace("__OURS__", &self.ours);
        self.raw.batch_execute(&copy).await?;
        for schema in [&self.ours, &self.theirs] {
            self.raw
                .batch_execute(&format!("VACUUM ANALYZE {schema}.events"))
                .await?;
        }
        Ok(())
    }

    /// Checks that both logs hold events of the same shape, and prints
    /// their sizes.
    pub(crate) async fn same_shape(&self, report: &Report) -> Result<(), Box<dyn Error>> {
        let sql = include_str!("event_sizes.sql");
        let (ours, baseline) = (
            self.event_sizes(&in_schema(sql, &self.ours)).await?,
            self.event_sizes(&self.raw_sql(sql)).await?,
        );
        if !ours.matches(&baseline) {
            return Err(format!("ours wrote events of {ours:?}, the baseline {baseline:?}").into());
        }
        ours.report(report);
        Ok(())
    }

    async fn event_sizes(&self, sql: &str) -> Result<EventSizes, Box<dyn Error>> {
        let row = self.raw.query_one(sql, &[]).await?;
        Ok(EventSizes {
            payload: row.try_get(0)?,
            metadata: row.try_get(1)?,
        })
    }
}

fn in_schema(sql: &str, schema: &str) -> String {
    // The schema names are the bench's own (`[a-z0-9_]`): no quoting needed.
    sql.replace("__SCHEMA__", schema)
}

async fn drop_schema(client: &Client, schema: &str) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await
}

/// Connects to `url`, with the connection driven by a task of its own.
async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        // The connection's errors come back to the client's calls.
        let _ = connection.await;
    });
    Ok(client)
}

/// A connection of the baseline that inserts events, one statement and so
/// one transaction each (autocommit).
pub(crate) struct RawWriter {
    client: Client,
    version: Statement,
    insert: Statement,
    shape: Shape,
}

impl RawWriter {
    pub(crate) async fn new(
        run: &PgRun,
        client: Client,
        shape: Shape,
    ) -> Result<RawWriter, tokio_postgres::Error> {
        let version = client
            .prepare(&run.raw_sql(include_str!("stream_version.sql")))
            .await?;
        let insert = client
            .prepare(&run.raw_sql(include_str!("insert.sql")))
            .await?;
        Ok(RawWriter {
            client,
            version,
            insert,
            shape,
        })
    }

    /// Appends one event as an application without a framework would:
    /// reads the stream's version, then inserts the event at the next one
    /// (one `INSERT` per transaction; the unique key on stream and version
    /// catches a racing writer). The version the caller expects is checked.
    pub(crate) async fn insert_at(
        &self,
        stream: &str,
        version: i64,
        event: &BankEvent,
    ) -> Result<(), Box<dyn Error + Send + Sync>> {
        let current: Option<i64> = self
            .client
            .query_one(&self.version, &[&stream])
            .await?
            .get(0);
        if current.unwrap_or(0) + 1 != version {
            return Err(format!("{stream} is at {current:?}, not {}", version - 1).into());
        }
        let (event_type, payload) = encode_raw(event);
        let schema_version = i32::try_from(event.schema_version())?;
        let metadata = self.shape.raw_metadata();
        self.client
            .execute(
                &self.insert,
                &[
                    &stream,
                    &version,
                    &uuid::Uuid::now_v7(),
                    &event_type,
                    &schema_version,
                    &payload,
                    &metadata,
                    &now_micros(),
                ],
            )
            .await?;
        Ok(())
    }
}

/// Runs `each` on `writers` concurrently, one task per writer, and waits
/// for all.
pub(crate) async fn on_each<F, Fut>(
    writers: &[Arc<RawWriter>],
    each: F,
) -> Result<(), Box<dyn Error>>
where
    F: Fn(usize, Arc<RawWriter>) -> Fut,
    Fut: Future<Output = Result<(), Box<dyn Error + Send + Sync>>> + Send + 'static,
{
    let tasks: Vec<_> = writers
        .iter()
        .enumerate()
        .map(|(n, writer)| tokio::spawn(each(n, Arc::clone(writer))))
        .collect();
    for task in tasks {
        task.await?.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Reads a row selected with `select_page.sql` the raw way: plain values,
/// payload and metadata decoded with serde.
pub(crate) fn envelope_from_row(row: &Row, shape: Shape) -> Result<Envelope, Box<dyn Error>> {
    let event_type: &str = row.try_get(0)?;
    let payload: &str = row.try_get(1)?;
    let metadata: Option<&str> = row.try_get(7)?;
    let metadata = match shape {
        Shape::Realistic => MetadataColumn::Ids(metadata.map(RawMetadata::decode).transpose()?),
        Shape::Small => MetadataColumn::Text(metadata.map(str::to_owned)),
    };
    let event_id: uuid::Uuid = row.try_get(5)?;
    Ok(Envelope {
        position: row.try_get(2)?,
        stream_id: row.try_get(3)?,
        version: row.try_get(4)?,
        event_id: event_id.as_bytes().to_vec(),
        schema_version: i64::from(row.try_get::<_, i32>(6)?),
        metadata,
        recorded_at: row.try_get(8)?,
        event: decode_raw(event_type, payload)?,
    })
}
