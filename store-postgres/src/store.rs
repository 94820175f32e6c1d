//! [`PostgresStore`]: the store contract on PostgreSQL.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use annals_core::store::{snapshot_from_stored, Names};
use annals_core::store::{ReplayEvent, Snapshot};
use annals_core::{
    AppendError, AppendOutcome, AppendRequest, BackendError, BackendErrorKind, Checkpoint,
    CheckpointStore, EventId, EventStore, EventType, HeadWatch, Limits, Page, Position, ReadAll,
    ReadError, ReadStream, RecordedEvent, SkippedEvent, SnapshotError, SnapshotStore, StreamId,
    Timestamp,
};
use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures_util::TryStreamExt;
use tokio::sync::watch;

use crate::error::{backend, corrupt, pool_error, OpenError};
use crate::name::SchemaName;
use crate::options::{PostgresOptions, ROLE_LISTENER, ROLE_WRITER};
use crate::read::{log_query, stream_param, stream_query};
use crate::row::{event_from_row, events_from_rows, replay_event_from_row};
use crate::schema;
use crate::sql::Sql;
use crate::watch::{listen, ListenerSetup};
use crate::writer::{Writer, WriterSetup};

/// The event store on PostgreSQL: many processes, on many machines, share
/// one log with every guarantee of the store contract.
///
/// Cheap to clone: clones share the pool, the writer and the head watch.
/// The store stops its tasks when the last clone is dropped, or at
/// [`close`](PostgresStore::close).
///
/// ```no_run
/// use annals_core::prelude::*;
/// use annals_core::{ExpectedVersion, NewEvent, Payload, StreamId};
/// use annals_postgres::PostgresStore;
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = PostgresStore::connect("postgres://postgres@127.0.0.1/app").await?;
/// let stream = StreamId::new("account-1")?;
/// let opened = NewEvent::new("Opened", 1, Payload::from_json(r#"{"owner":"ada"}"#)?)?;
/// store.append_to_stream(&stream, ExpectedVersion::Any, vec![opened]).await?;
/// assert!(!store.read_stream_to_end(&stream).await?.is_empty());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    schema: SchemaName,
    config: tokio_postgres::Config,
    sql: Arc<Sql>,
    pool: Pool,
    writer: Mutex<Option<Writer>>,
    limits: Limits,
    /// The head as last published; the sender goes at close.
    head: watch::Receiver<Position>,
    head_sender: Mutex<Option<Arc<watch::Sender<Position>>>>,
    /// Set when the store closes (or dropped with it): stops the listener.
    stop: watch::Sender<bool>,
    listening: Mutex<bool>,
    poll: std::time::Duration,
    runtime: tokio::runtime::Handle,
    listener_connects: Arc<AtomicU64>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.inner.schema.as_str())
            .finish_non_exhaustive()
    }
}

impl PostgresOptions {
    /// Connects, creates or migrates the schema as the options say, and
    /// opens the store.
    pub async fn connect(self) -> Result<PostgresStore, OpenError> {
        PostgresStore::open_with(self).await
    }

    /// Creates the schema or brings it to this build's version, without
    /// opening a store: for a deployment step that migrates before the
    /// application starts with [`PostgresOptions::migrate_on_open`] off.
    /// Safe when several processes do it at once. Returns the version the
    /// schema had before (0 when it had none).
    pub async fn migrate(&self) -> Result<u32, OpenError> {
        let (schema, config) = self.check()?;
        crate::schema::connect_and_migrate(&config, &schema, true).await
    }
}

impl PostgresStore {
    /// Options to open a store with; [`PostgresOptions::connect`] opens it.
    pub fn options() -> PostgresOptions {
        PostgresOptions::default()
    }

    /// Opens the store in the default schema (`annals`) of the database at
    /// `url`, creating or migrating the schema as needed.
    pub async fn connect(url: &str) -> Result<PostgresStore, OpenError> {
        PostgresStore::options().url(url).connect().await
    }

    pub(crate) async fn open_with(options: PostgresOptions) -> Result<PostgresStore, OpenError> {
        let (schema, config) = options.check()?;
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| OpenError::InvalidOptions {
                setting: "runtime",
                reason: "a PostgresStore is opened inside a tokio runtime".to_owned(),
            })?;
        schema::connect_and_migrate(&config, &schema, options.migrate).await?;

        let sql = Arc::new(Sql::new(&schema));
        let manager = Manager::from_config(
            config.clone(),
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .wait_timeout(Some(options.pool_wait))
            .create_timeout(Some(options.connect_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| OpenError::InvalidOptions {
                setting: "pool_size",
                reason: e.to_string(),
            })?;
        let head = read_head(&pool, &sql)
            .await
            .map_err(|source| OpenError::Backend {
                schema: schema.as_str().to_owned(),
                source,
            })?;
        let (head_sender, head_receiver) = watch::channel(head);
        let head_sender = Arc::new(head_sender);
        let mut writer_config = config.clone();
        writer_config.application_name(ROLE_WRITER);
        // The writer's statements are few and always the same shape: plans
        // made once serve every call, where planning each call anew would
        // cost more than the append.
        let server_options = writer_config.get_options().unwrap_or_default().to_owned();
        writer_config.options(format!(
            "{server_options} -c plan_cache_mode=force_generic_plan -c enable_seqscan=off"
        ));
        let writer = Writer::start(WriterSetup {
            config: writer_config,
            sql: Arc::clone(&sql),
            channel: schema.channel(),
            head: Arc::clone(&head_sender),
            max_group: options.max_group,
        });
        let (stop, _) = watch::channel(false);
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                schema,
                config,
                sql,
                pool,
                writer: Mutex::new(Some(writer)),
                limits: options.limits,
                head: head_receiver,
                head_sender: Mutex::new(Some(head_sender)),
                stop,
                listening: Mutex::new(false),
                poll: options.head_poll_interval,
                runtime,
                listener_connects: Arc::new(AtomicU64::new(0)),
            }),
        })
    }

    /// The schema the store lives in.
    pub fn schema(&self) -> &str {
        self.inner.schema.as_str()
    }

    /// Closes the store: appends and reads fail with
    /// [`BackendErrorKind::Closed`] from now on, head watchers learn that
    /// the store is closed, and the connections are let go.
    pub async fn close(&self) {
        self.inner.writer.lock().map(|mut w| w.take()).ok();
        self.inner.head_sender.lock().map(|mut h| h.take()).ok();
        self.inner.stop.send_replace(true);
        self.inner.pool.close();
    }

    /// Drops the store's schema and everything in it: events, snapshots,
    /// checkpoints, handler requests. For tests and for removing a store
    /// for good; the store is closed first.
    pub async fn drop_schema(&self) -> Result<(), BackendError> {
        self.close().await;
        schema::drop_schema(&self.inner.config, &self.inner.schema)
            .await
            .map_err(|e| backend("dropping the schema", e))
    }

    /// How many times the head listener has (re)connected: 0 until the
    /// head is first watched.
    pub fn listener_connects(&self) -> u64 {
        self.inner
            .listener_connects
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn sql(&self) -> &Sql {
        &self.inner.sql
    }

    pub(crate) async fn client(
        &self,
        doing: &str,
    ) -> Result<deadpool_postgres::Object, BackendError> {
        self.inner
            .pool
            .get()
            .await
            .map_err(|e| pool_error(doing, e))
    }

    fn start_listener(&self) {
        let Ok(mut listening) = self.inner.listening.lock() else {
            return;
        };
        if *listening {
            return;
        }
        let Some(head) = self
            .inner
            .head_sender
            .lock()
            .ok()
            .and_then(|h| h.as_ref().map(Arc::clone))
        else {
            return;
        };
        *listening = true;
        let mut config = self.inner.config.clone();
        config.application_name(ROLE_LISTENER);
        let setup = ListenerSetup {
            config,
            channel: self.inner.schema.channel(),
            head_sql: self.inner.sql.head.clone(),
            head,
            poll: self.inner.poll,
            stop: self.inner.stop.subscribe(),
            connects: Arc::clone(&self.inner.listener_connects),
        };
        self.inner.runtime.spawn(listen(setup));
    }
}

async fn read_head(pool: &Pool, sql: &Sql) -> Result<Position, BackendError> {
    let client = pool
        .get()
        .await
        .map_err(|e| pool_error("reading the head", e))?;
    let statement = client
        .prepare_cached(&sql.head)
        .await
        .map_err(|e| backend("reading the head", e))?;
    let row = client
        .query_one(&statement, &[])
        .await
        .map_err(|e| backend("reading the head", e))?;
    head_of(&row)
}

fn head_of(row: &tokio_postgres::Row) -> Result<Position, BackendError> {
    crate::row::position_in(row).ok_or_else(|| corrupt("the head position is unreadable"))
}

#[async_trait]
impl EventStore for PostgresStore {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, AppendError> {
        request.check(&self.inner.limits)?;
        let writer = self
            .inner
            .writer
            .lock()
            .ok()
            .and_then(|w| w.as_ref().cloned())
            .ok_or_else(BackendError::closed)?;
        writer.append(request).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        read: ReadStream,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        let sql = self.sql();
        let statements = (sql.stream_forward.as_str(), sql.stream_backward.as_str());
        self.stream_page(stream, &read, statements, event_from_row)
            .await
    }

    async fn read_stream_for_replay(
        &self,
        stream: &StreamId,
        read: ReadStream,
    ) -> Result<Vec<ReplayEvent>, ReadError> {
        let sql = self.sql();
        let statements = (sql.replay_forward.as_str(), sql.replay_backward.as_str());
        self.stream_page(stream, &read, statements, replay_event_from_row)
            .await
    }

    async fn read_all(&self, read: ReadAll) -> Result<Page, ReadError> {
        let start = read.start();
        let limit = read.max_count();
        let query = log_query(&self.sql().schema, start.0, read.filter(), limit);
        let client = self.client("reading the log").await?;
        let failed = |e| ReadError::Backend(backend("reading the log", e));
        let head_statement = client
            .prepare_cached(&self.sql().head)
            .await
            .map_err(failed)?;
        // The head first: every event up to it had committed when the
        // page's query began (see `read`). The two statements go in one
        // pipeline; the server runs them in order.
        let (head, events) = match (&query, limit) {
            (Some(query), 1..) => {
                let statement = client.prepare_cached(&query.sql).await.map_err(failed)?;
                let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = query
                    .params
                    .iter()
                    .map(|p| p.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
                    .collect();
                let (head, rows) = tokio::try_join!(
                    client.query_one(&head_statement, &[]),
                    client.query_raw(&statement, params),
                )
                .map_err(failed)?;
                // Each row becomes an event as it arrives: decoding goes on
                // while the server still sends, and only the events are
                // kept.
                let mut rows = std::pin::pin!(rows);
                let mut names = Names::default();
                let mut events = Vec::with_capacity(limit.min(1024));
                while let Some(row) = rows.try_next().await.map_err(failed)? {
                    events.push(event_from_row(&row, &mut names)?);
                }
                (head_of(&head)?, events)
            }
            _ => {
                let head = client
                    .query_one(&head_statement, &[])
                    .await
                    .map_err(failed)?;
                (head_of(&head)?, Vec::new())
            }
        };
        let read_through = match events.last() {
            Some(last) if events.len() == limit => last.position,
            Some(last) => last.position.max(head).max(start),
            None if limit == 0 => start,
            None => head.max(start),
        };
        Ok(Page::new(events, read_through))
    }

    async fn head(&self) -> Result<Position, ReadError> {
        Ok(read_head(&self.inner.pool, self.sql()).await?)
    }

    fn watch_head(&self) -> HeadWatch {
        self.start_listener();
        HeadWatch::new(self.inner.head.clone())
    }
}

impl PostgresStore {
    /// A page of one stream, read with the forward or the backward
    /// statement of `statements` as the read goes.
    async fn stream_page<T>(
        &self,
        stream: &StreamId,
        read: &ReadStream,
        statements: (&str, &str),
        from_row: fn(&tokio_postgres::Row, &mut Names) -> Result<T, ReadError>,
    ) -> Result<Vec<T>, ReadError> {
        let Some((query, from, limit)) = stream_query(read, statements.0, statements.1) else {
            return Ok(Vec::new());
        };
        let rows = self
            .query(
                "reading a stream",
                query,
                &[&stream_param(stream), &from, &limit],
            )
            .await?;
        events_from_rows(&rows, from_row)
    }

    /// Runs one prepared statement on a pooled connection.
    pub(crate) async fn query(
        &self,
        doing: &str,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, BackendError> {
        let client = self.client(doing).await?;
        let statement = client
            .prepare_cached(sql)
            .await
            .map_err(|e| backend(doing, e))?;
        client
            .query(&statement, params)
            .await
            .map_err(|e| backend(doing, e))
    }

    /// Runs one prepared statement that returns no rows.
    pub(crate) async fn execute(
        &self,
        doing: &str,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, BackendError> {
        let client = self.client(doing).await?;
        let statement = client
            .prepare_cached(sql)
            .await
            .map_err(|e| backend(doing, e))?;
        client
            .execute(&statement, params)
            .await
            .map_err(|e| backend(doing, e))
    }
}

#[async_trait]
impl SnapshotStore for PostgresStore {
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), SnapshotError> {
        let version = i64::try_from(snapshot.version).map_err(|_| {
            SnapshotError::Backend(BackendError::new(
                BackendErrorKind::Other,
                "a snapshot's version is past the largest PostgreSQL can store",
            ))
        })?;
        let state_version = i32::try_from(snapshot.state_version).map_err(|_| {
            SnapshotError::Backend(BackendError::new(
                BackendErrorKind::Other,
                "a snapshot's state version is past the largest PostgreSQL can store",
            ))
        })?;
        self.execute(
            "saving a snapshot",
            &self.sql().save_snapshot,
            &[
                &snapshot.stream_id.as_str(),
                &version,
                &state_version,
                &snapshot.state.as_str(),
                &snapshot.taken_at.as_unix_micros(),
            ],
        )
        .await?;
        Ok(())
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, SnapshotError> {
        let rows = self
            .query(
                "reading a snapshot",
                &self.sql().load_snapshot,
                &[&stream.as_str()],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let corrupt = |reason: &str| SnapshotError::Corrupt {
            stream: stream.clone(),
            reason: reason.to_owned(),
        };
        let version: i64 = row
            .try_get(0)
            .map_err(|_| corrupt("version is unreadable"))?;
        let state_version: i32 = row
            .try_get(1)
            .map_err(|_| corrupt("state version is unreadable"))?;
        let state: String = row.try_get(2).map_err(|_| corrupt("state is unreadable"))?;
        let taken_at: i64 = row
            .try_get(3)
            .map_err(|_| corrupt("taken_at is unreadable"))?;
        snapshot_from_stored(stream, version, i64::from(state_version), state, taken_at).map(Some)
    }
}

/// A position as a `bigint`, refused when PostgreSQL cannot store it.
pub(crate) fn stored_position(name: &str, position: Position) -> Result<i64, BackendError> {
    i64::try_from(position.0).map_err(|_| {
        BackendError::new(
            BackendErrorKind::Other,
            format!(
                "checkpoint {name:?}: position {position} is past the largest PostgreSQL can \
                 store ({})",
                i64::MAX
            ),
        )
    })
}

#[async_trait]
impl CheckpointStore for PostgresStore {
    async fn load_checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, BackendError> {
        if unstorable(name) {
            return Ok(None);
        }
        let rows = self
            .query(
                "reading a checkpoint",
                &self.sql().load_checkpoint,
                &[&name],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let bad = |what: &str| corrupt(format!("checkpoint {name:?}: {what}"));
        let position: i64 = row.try_get(0).map_err(|_| bad("position is unreadable"))?;
        let event_id: Option<uuid::Uuid> =
            row.try_get(1).map_err(|_| bad("event id is unreadable"))?;
        let version: i64 = row.try_get(2).map_err(|_| bad("version is unreadable"))?;
        Ok(Some(Checkpoint {
            position: Position(u64::try_from(position).map_err(|_| bad("negative position"))?),
            event_id: event_id
                .map(EventId::from_uuid)
                .transpose()
                .map_err(|_| bad("event id is the nil UUID"))?,
            version: u32::try_from(version).map_err(|_| bad("version is out of range"))?,
        }))
    }

    async fn save_checkpoint(
        &self,
        name: &str,
        checkpoint: Checkpoint,
        skipped: &[SkippedEvent],
    ) -> Result<(), BackendError> {
        if unstorable(name) {
            return Err(BackendError::new(
                BackendErrorKind::Other,
                "a checkpoint name cannot hold a NUL character",
            ));
        }
        let position = stored_position(name, checkpoint.position)?;
        let positions = skipped
            .iter()
            .map(|e| stored_position(name, e.position))
            .collect::<Result<Vec<_>, _>>()?;
        let ids: Vec<uuid::Uuid> = skipped.iter().map(|e| *e.event_id.as_uuid()).collect();
        let types: Vec<&str> = skipped.iter().map(|e| e.event_type.as_str()).collect();
        let errors: Vec<&str> = skipped.iter().map(|e| e.error.as_str()).collect();
        let times: Vec<i64> = skipped
            .iter()
            .map(|e| e.skipped_at.as_unix_micros())
            .collect();
        let doing = "saving a checkpoint";
        let mut client = self.client(doing).await?;
        let tx = client.transaction().await.map_err(|e| backend(doing, e))?;
        let sql = self.sql();
        let save = tx
            .prepare_cached(&sql.save_checkpoint)
            .await
            .map_err(|e| backend(doing, e))?;
        tx.execute(
            &save,
            &[
                &name,
                &position,
                &checkpoint.event_id.map(|id| *id.as_uuid()),
                &i64::from(checkpoint.version),
                &Timestamp::now().as_unix_micros(),
            ],
        )
        .await
        .map_err(|e| backend(doing, e))?;
        if !skipped.is_empty() {
            let insert = tx
                .prepare_cached(&sql.insert_skipped)
                .await
                .map_err(|e| backend(doing, e))?;
            tx.execute(&insert, &[&name, &positions, &ids, &types, &errors, &times])
                .await
                .map_err(|e| backend(doing, e))?;
        }
        tx.commit().await.map_err(|e| backend(doing, e))
    }

    async fn skipped_events(&self, name: &str) -> Result<Vec<SkippedEvent>, BackendError> {
        if unstorable(name) {
            return Ok(Vec::new());
        }
        let rows = self
            .query(
                "reading skipped events",
                &self.sql().skipped_events,
                &[&name],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let bad = |what: &str| corrupt(format!("a skipped event of {name:?}: {what}"));
                let position: i64 = row.try_get(0).map_err(|_| bad("position"))?;
                let event_id: uuid::Uuid = row.try_get(1).map_err(|_| bad("event id"))?;
                let event_type: &str = row.try_get(2).map_err(|_| bad("event type"))?;
                Ok(SkippedEvent {
                    position: Position(u64::try_from(position).map_err(|_| bad("position"))?),
                    event_id: EventId::from_uuid(event_id).map_err(|_| bad("nil event id"))?,
                    event_type: EventType::new(event_type).map_err(|_| bad("event type"))?,
                    error: row.try_get(3).map_err(|_| bad("error"))?,
                    skipped_at: Timestamp::from_unix_micros(
                        row.try_get(4).map_err(|_| bad("skipped_at"))?,
                    ),
                })
            })
            .collect()
    }

    async fn reset_checkpoint(&self, name: &str) -> Result<(), BackendError> {
        if unstorable(name) {
            return Ok(());
        }
        let doing = "resetting a checkpoint";
        let mut client = self.client(doing).await?;
        let tx = client.transaction().await.map_err(|e| backend(doing, e))?;
        for sql in [&self.sql().delete_checkpoint, &self.sql().delete_skipped] {
            let statement = tx
                .prepare_cached(sql)
                .await
                .map_err(|e| backend(doing, e))?;
            tx.execute(&statement, &[&name])
                .await
                .map_err(|e| backend(doing, e))?;
        }
        tx.commit().await.map_err(|e| backend(doing, e))
    }
}

/// PostgreSQL's text cannot hold NUL: no name with one is ever stored.
pub(crate) fn unstorable(name: &str) -> bool {
    name.contains('\0')
}
