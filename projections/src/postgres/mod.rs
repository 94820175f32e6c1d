//! A read model in a PostgreSQL database: its tables and its checkpoint in
//! a schema the application names, and rebuilds into a shadow schema that
//! is moved in.
//!
//! # Every batch in one transaction
//!
//! Each batch is one transaction whose `search_path` is the model's schema
//! alone: the handler's unqualified names are the model's tables, and the
//! checkpoint row it moves sits beside them. The checkpoint moves only from
//! where this runner last committed it, so that two runners of the same
//! projection (two instances of an application) never apply a batch twice:
//! the second one's batch is rolled back with an error.
//!
//! # Rebuilds never show a half-built model
//!
//! A rebuild reads the log from the start into a shadow schema of its own
//! (`annals_rebuild_<hash of schema and name>`, with a comment saying whose
//! it is), with its own checkpoint, while the model keeps serving from its
//! schema. Once the shadow has caught up with the log, one transaction drops
//! the old model's relations, moves the new ones over
//! (`ALTER … SET SCHEMA`, no rows copied), moves the checkpoint and skipped
//! events, and drops the shadow: PostgreSQL's DDL is transactional, so
//! readers see the old model until it commits and the new one after. A
//! rebuild that is interrupted leaves the old model serving, and the next
//! start goes on from the shadow's own checkpoint.

mod error;

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use annals_core::{BackendError, BackendErrorKind, Checkpoint, Position, SkippedEvent};
use futures_util::FutureExt;
use tokio_postgres::{Client, Config, NoTls, Transaction};

use crate::envelope::Envelope;
use crate::projection::PostgresProjection;
use crate::read_model::{
    created, guarded, handled, position_column, stored_checkpoint, stored_event_id, stored_skipped,
    BatchError, Handled, Stored,
};
use error::{failed, uncommitted, unreachable};

const SCHEMA: &str = include_str!("schema.sql");
const LOAD_CHECKPOINT: &str = include_str!("load_checkpoint.sql");
const REGISTER: &str = include_str!("register.sql");
const SAVE_CHECKPOINT: &str = include_str!("save_checkpoint.sql");
const RECORD_SKIPPED: &str = include_str!("record_skipped.sql");
const LIST_SKIPPED: &str = include_str!("list_skipped.sql");
const RELATIONS: &str = include_str!("relations.sql");

/// How long a connection attempt may take when the configuration does not
/// say.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest schema name PostgreSQL keeps whole (NAMEDATALEN - 1).
const MAX_SCHEMA_LEN: usize = 63;

/// Shadow schemas are named with this prefix.
const SHADOW_PREFIX: &str = "annals_rebuild_";

/// Checks the name of a read model's schema: a plain lower-case
/// identifier that PostgreSQL keeps as it is, and not the system's.
pub(crate) fn check_schema(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.len() > MAX_SCHEMA_LEN {
        return Err("it is longer than 63 bytes");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err("only lower-case ASCII letters, digits and '_' are allowed");
    }
    if name.as_bytes()[0].is_ascii_digit() {
        // The name is not empty (checked above).
        return Err("it starts with a digit");
    }
    if name.starts_with("pg_") || name == "information_schema" {
        return Err("it is reserved for the system");
    }
    if name.starts_with(SHADOW_PREFIX) {
        return Err("names starting with \"annals_rebuild_\" are kept for rebuilds");
    }
    Ok(())
}

/// A double-quoted SQL identifier.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A single-quoted SQL string.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// FNV-1a: a stable 64-bit hash (the standard library's may change).
fn fnv1a(parts: &[&str]) -> u64 {
    parts
        .iter()
        .flat_map(|part| part.bytes().chain([0]))
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
}

/// The key of the advisory lock that makes the runners' own DDL in a
/// schema take turns (creating the schema, registering a model, swapping).
fn lock_key(schema: &str) -> i64 {
    i64::from_be_bytes(fnv1a(&["annals_projections", schema]).to_be_bytes())
}

/// A projection with its connection to the read model's database.
pub(crate) struct ReadModel<P> {
    projection: P,
    config: Config,
    schema: String,
    shadow: String,
    /// Absent until the first use, and after the connection was lost.
    client: Option<Client>,
    /// Whether a rebuild is building into the shadow schema.
    rebuilding: bool,
    /// The position of the checkpoint being moved (the model's or the
    /// shadow's), as this runner last committed it.
    committed: Position,
}

impl<P: PostgresProjection> ReadModel<P> {
    /// A model in `schema` (checked by [`check_schema`]) of the database
    /// `config` connects to; nothing is connected yet.
    pub(crate) fn new(projection: P, config: Config, schema: String) -> Self {
        let shadow = format!("{SHADOW_PREFIX}{:016x}", fnv1a(&[&schema, P::NAME]));
        ReadModel {
            projection,
            config,
            schema,
            shadow,
            client: None,
            rebuilding: false,
            committed: Position::START,
        }
    }

    /// The schema being written: the shadow during a rebuild.
    fn building(&self) -> &str {
        if self.rebuilding {
            &self.shadow
        } else {
            &self.schema
        }
    }

    /// Connects, creates the schema, the checkpoint tables and the
    /// projection's tables if they are missing, and returns its stored
    /// checkpoint.
    pub(crate) async fn open(&mut self) -> Result<Checkpoint, BackendError> {
        let client = connected(&mut self.client, &self.config).await?;
        let tx = begin(client, &self.schema, "opening the read model").await?;
        take_turn(&tx, &self.schema).await?;
        prepare(&tx, &self.schema).await?;
        let checkpoint = match load(&tx, &self.schema, P::NAME).await? {
            Some(stored) => stored.checkpoint,
            None => {
                register_new(&tx, &self.schema, &self.projection).await?;
                Checkpoint::start(P::VERSION)
            }
        };
        if checkpoint.version == P::VERSION {
            // Nothing to rebuild: a shadow left by a rebuild of another
            // version is of no use.
            drop_schema(&tx, &self.shadow).await?;
        }
        tx.commit()
            .await
            .map_err(failed("committing the opened model"))?;
        self.rebuilding = false;
        self.committed = checkpoint.position;
        Ok(checkpoint)
    }

    /// Handles `events` and moves the checkpoint, with `skipped` recorded,
    /// in one transaction on the model being built: the shadow during a
    /// rebuild, else the model itself. On a handler's failure nothing is
    /// kept.
    pub(crate) async fn apply(
        &mut self,
        events: &[Envelope<P::Events>],
        checkpoint: Checkpoint,
        skipped: Option<&SkippedEvent>,
    ) -> Result<(), BatchError> {
        let schema = self.building().to_owned();
        let client = connected(&mut self.client, &self.config)
            .await
            .map_err(BatchError::Backend)?;
        let tx = begin(client, &schema, "beginning a batch")
            .await
            .map_err(BatchError::Backend)?;
        let result = AssertUnwindSafe(self.projection.handle_batch(&tx, events))
            .catch_unwind()
            .await;
        match handled(result, events.len()) {
            Handled::Done => {}
            // Dropping the transaction rolls the batch back.
            Handled::Failed(failure) => return Err(failure),
            Handled::Panicked(error) => {
                drop(tx);
                return Err(self.locate_panic(events, error).await);
            }
        }
        save(&tx, &schema, P::NAME, checkpoint, self.committed, skipped)
            .await
            .map_err(BatchError::Backend)?;
        tx.commit()
            .await
            .map_err(|e| BatchError::Backend(uncommitted(e)))?;
        self.committed = checkpoint.position;
        Ok(())
    }

    /// Finds which event a panic of `handle_batch` came from, by handling
    /// the batch again one event at a time in a transaction that is rolled
    /// back. If none fails this time, the batch's first event is blamed.
    async fn locate_panic(&mut self, events: &[Envelope<P::Events>], error: String) -> BatchError {
        let at_first = |error| BatchError::Handler { index: 0, error };
        if events.len() < 2 {
            return at_first(error);
        }
        let schema = self.building().to_owned();
        let Ok(client) = connected(&mut self.client, &self.config).await else {
            return at_first(error);
        };
        let Ok(tx) = begin(client, &schema, "handling a batch again").await else {
            return at_first(error);
        };
        for (index, event) in events.iter().enumerate() {
            if let Err(error) = guarded(self.projection.handle(&tx, event)).await {
                return BatchError::Handler { index, error };
            }
        }
        at_first(error)
    }

    /// Starts (or goes on with) a rebuild into the shadow schema, and
    /// returns where the shadow's build stands.
    pub(crate) async fn begin_rebuild(&mut self) -> Result<Checkpoint, BackendError> {
        let client = connected(&mut self.client, &self.config).await?;
        let tx = begin(client, &self.shadow, "starting a rebuild").await?;
        take_turn(&tx, &self.schema).await?;
        // A rebuild of this version that was interrupted goes on; a shadow
        // of another version starts over.
        let resumed = load(&tx, &self.shadow, P::NAME)
            .await?
            .filter(|stored| stored.checkpoint.version == P::VERSION);
        let checkpoint = match resumed {
            Some(stored) => stored.checkpoint,
            None => {
                drop_schema(&tx, &self.shadow).await?;
                let comment = format!(
                    "annals: the rebuild of projection {} of schema {}",
                    P::NAME,
                    self.schema
                );
                prepare(&tx, &self.shadow).await?;
                tx.batch_execute(&format!(
                    "COMMENT ON SCHEMA {} IS {}",
                    quote(&self.shadow),
                    literal(&comment),
                ))
                .await
                .map_err(failed("creating the rebuild's shadow schema"))?;
                register_new(&tx, &self.shadow, &self.projection).await?;
                Checkpoint::start(P::VERSION)
            }
        };
        tx.commit()
            .await
            .map_err(failed("committing the start of a rebuild"))?;
        self.rebuilding = true;
        self.committed = checkpoint.position;
        Ok(checkpoint)
    }

    /// Swaps the rebuilt model in: one transaction drops the old model's
    /// relations, moves the shadow's in, moves its checkpoint and skipped
    /// events over, and drops the shadow.
    pub(crate) async fn finish_rebuild(&mut self) -> Result<Checkpoint, BackendError> {
        if !self.rebuilding {
            return Err(BackendError::new(
                BackendErrorKind::Other,
                "no rebuild is in progress",
            ));
        }
        let client = connected(&mut self.client, &self.config).await?;
        let tx = begin(client, &self.schema, "beginning the swap").await?;
        take_turn(&tx, &self.schema).await?;
        let rebuilt = load(&tx, &self.shadow, P::NAME).await?.ok_or_else(|| {
            BackendError::new(
                BackendErrorKind::Corrupt,
                "the rebuild's shadow schema has no checkpoint",
            )
        })?;
        let old = load(&tx, &self.schema, P::NAME)
            .await?
            .map_or_else(Vec::new, |s| s.tables);
        drop_relations(&tx, &self.schema, &old).await?;
        let (schema, shadow) = (quote(&self.schema), quote(&self.shadow));
        let mut tables = Vec::new();
        for (name, kind) in relations(&tx, &self.shadow).await? {
            tx.batch_execute(&format!(
                "ALTER {} {shadow}.{} SET SCHEMA {schema}",
                kind.noun(),
                quote(&name)
            ))
            .await
            .map_err(failed("moving the rebuilt model in"))?;
            tables.push(name);
        }
        tx.execute(
            &format!("DELETE FROM {schema}.annals_skipped_events WHERE projection = $1"),
            &[&P::NAME],
        )
        .await
        .map_err(failed("clearing the old model's skipped events"))?;
        tx.execute(
            &format!(
                "INSERT INTO {schema}.annals_skipped_events \
                 SELECT * FROM {shadow}.annals_skipped_events WHERE projection = $1"
            ),
            &[&P::NAME],
        )
        .await
        .map_err(failed("moving the rebuilt model's skipped events"))?;
        register(&tx, &self.schema, P::NAME, rebuilt.checkpoint, &tables).await?;
        drop_schema(&tx, &self.shadow).await?;
        tx.commit().await.map_err(failed("committing the swap"))?;
        self.rebuilding = false;
        self.committed = rebuilt.checkpoint.position;
        Ok(rebuilt.checkpoint)
    }
}

/// The events projection `name` skipped, as recorded in `schema` of the
/// database `config` connects to.
pub(crate) async fn skipped_events(
    config: &Config,
    schema: &str,
    name: &str,
) -> Result<Vec<SkippedEvent>, BackendError> {
    let mut client = None;
    let client = connected(&mut client, config).await?;
    let table = format!("{}.annals_skipped_events", quote(schema));
    if !exists(client, &table).await? {
        return Ok(Vec::new());
    }
    let rows = client
        .query(&sql(LIST_SKIPPED, schema), &[&name])
        .await
        .map_err(failed("listing skipped events"))?;
    rows.iter()
        .map(|row| {
            let read = |row: &tokio_postgres::Row| {
                Ok::<_, tokio_postgres::Error>((
                    row.try_get::<_, i64>(0)?,
                    row.try_get::<_, uuid::Uuid>(1)?,
                    row.try_get::<_, String>(2)?,
                    row.try_get::<_, String>(3)?,
                    row.try_get::<_, i64>(4)?,
                ))
            };
            let (position, event_id, event_type, error, skipped_at) =
                read(row).map_err(failed("reading a skipped event"))?;
            stored_skipped(
                position,
                stored_event_id(event_id)?,
                event_type,
                error,
                skipped_at,
            )
        })
        .collect()
}

/// The client, connected anew if it never was or its connection is gone.
async fn connected<'c>(
    client: &'c mut Option<Client>,
    config: &Config,
) -> Result<&'c mut Client, BackendError> {
    if client.as_ref().is_some_and(Client::is_closed) {
        *client = None;
    }
    match client {
        Some(client) => Ok(client),
        None => Ok(client.insert(connect(config).await?)),
    }
}

async fn connect(config: &Config) -> Result<Client, BackendError> {
    let mut config = config.clone();
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("annals projections");
    }
    let (client, connection) = config.connect(NoTls).await.map_err(unreachable)?;
    // The connection's task ends when the client is dropped or the
    // server goes away; the client then reports it closed.
    tokio::spawn(connection);
    Ok(client)
}

/// Begins a transaction working in `schema`: the whole `search_path`, so
/// that a handler's unqualified names are the model's.
async fn begin<'c>(
    client: &'c mut Client,
    schema: &str,
    doing: &'static str,
) -> Result<Transaction<'c>, BackendError> {
    let tx = client.transaction().await.map_err(failed(doing))?;
    tx.batch_execute(&format!("SET LOCAL search_path TO {}", quote(schema)))
        .await
        .map_err(failed(doing))?;
    Ok(tx)
}

/// Waits for the runners' DDL in `schema` (creating it, registering a
/// model, swapping one in) to be this transaction's turn.
async fn take_turn(tx: &Transaction<'_>, schema: &str) -> Result<(), BackendError> {
    tx.execute(
        "SELECT pg_catalog.pg_advisory_xact_lock($1)",
        &[&lock_key(schema)],
    )
    .await
    .map_err(failed("waiting for the schema's turn"))?;
    Ok(())
}

/// The statement `template` with its `{schema}` naming `schema`.
fn sql(template: &str, schema: &str) -> String {
    template.replace("{schema}", &quote(schema))
}

/// Creates `schema` and its checkpoint tables, where missing.
async fn prepare(tx: &Transaction<'_>, schema: &str) -> Result<(), BackendError> {
    // Looked up first: CREATE SCHEMA IF NOT EXISTS needs the right to
    // create schemas even when the schema exists.
    let missing = tx
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1",
            &[&schema],
        )
        .await
        .map_err(failed("looking for the read model's schema"))?
        .is_none();
    if missing {
        tx.batch_execute(&format!("CREATE SCHEMA {}", quote(schema)))
            .await
            .map_err(failed("creating the read model's schema"))?;
    }
    tx.batch_execute(&sql(SCHEMA, schema))
        .await
        .map_err(failed("creating the checkpoint tables"))
}

/// Whether relation `name` (qualified and quoted) exists.
async fn exists(client: &Client, name: &str) -> Result<bool, BackendError> {
    client
        .query_one("SELECT pg_catalog.to_regclass($1) IS NOT NULL", &[&name])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(failed("looking for the checkpoint tables"))
}

/// Creates the projection's tables in `schema` and its checkpoint row, at
/// the start.
async fn register_new<P: PostgresProjection>(
    tx: &Transaction<'_>,
    schema: &str,
    projection: &P,
) -> Result<(), BackendError> {
    let before = relations(tx, schema).await?;
    created(AssertUnwindSafe(projection.create(tx)).catch_unwind().await)?;
    let tables: Vec<String> = relations(tx, schema)
        .await?
        .into_iter()
        .filter(|relation| !before.contains(relation))
        .map(|(name, _)| name)
        .collect();
    register(tx, schema, P::NAME, Checkpoint::start(P::VERSION), &tables).await
}

/// Writes a projection's row in `schema` afresh.
async fn register(
    tx: &Transaction<'_>,
    schema: &str,
    name: &str,
    checkpoint: Checkpoint,
    tables: &[String],
) -> Result<(), BackendError> {
    tx.execute(
        &sql(REGISTER, schema),
        &[
            &name,
            &i64::from(checkpoint.version),
            &position_column(checkpoint.position)?,
            &checkpoint.event_id.map(|id| *id.as_uuid()),
            &tables,
        ],
    )
    .await
    .map_err(failed("recording the model"))?;
    Ok(())
}

/// A relation's kind, as `pg_class.relkind` has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Table,
    View,
    MaterializedView,
    ForeignTable,
    Sequence,
}

impl Kind {
    fn of(relkind: &str) -> Option<Kind> {
        Some(match relkind {
            "r" | "p" => Kind::Table,
            "v" => Kind::View,
            "m" => Kind::MaterializedView,
            "f" => Kind::ForeignTable,
            "S" => Kind::Sequence,
            _ => return None,
        })
    }

    /// Its name in `DROP` and `ALTER`.
    fn noun(self) -> &'static str {
        match self {
            Kind::Table => "TABLE",
            Kind::View => "VIEW",
            Kind::MaterializedView => "MATERIALIZED VIEW",
            Kind::ForeignTable => "FOREIGN TABLE",
            Kind::Sequence => "SEQUENCE",
        }
    }
}

/// The model's relations in `schema`, by name.
async fn relations(
    tx: &Transaction<'_>,
    schema: &str,
) -> Result<Vec<(String, Kind)>, BackendError> {
    let rows = tx
        .query(RELATIONS, &[&schema])
        .await
        .map_err(failed("listing the model's tables"))?;
    let mut relations = Vec::with_capacity(rows.len());
    for row in rows {
        let name: String = row
            .try_get(0)
            .map_err(failed("listing the model's tables"))?;
        let relkind: String = row
            .try_get(1)
            .map_err(failed("listing the model's tables"))?;
        if let Some(kind) = Kind::of(&relkind) {
            relations.push((name, kind));
        }
    }
    Ok(relations)
}

/// Drops the relations named `names` in `schema`, those that depend on
/// others first; each kind in one statement, so that relations of one
/// kind that depend on each other go together. Without `CASCADE`: an
/// object outside the model that depends on it makes the swap fail rather
/// than vanish.
async fn drop_relations(
    tx: &Transaction<'_>,
    schema: &str,
    names: &[String],
) -> Result<(), BackendError> {
    let present = relations(tx, schema).await?;
    let order = [
        Kind::MaterializedView,
        Kind::View,
        Kind::Table,
        Kind::ForeignTable,
        Kind::Sequence,
    ];
    for kind in order {
        let listed: Vec<String> = present
            .iter()
            .filter(|(name, k)| *k == kind && names.contains(name))
            .map(|(name, _)| format!("{}.{}", quote(schema), quote(name)))
            .collect();
        if listed.is_empty() {
            continue;
        }
        tx.batch_execute(&format!(
            "DROP {} IF EXISTS {}",
            kind.noun(),
            listed.join(", ")
        ))
        .await
        .map_err(failed("dropping the old model's tables"))?;
    }
    Ok(())
}

async fn drop_schema(tx: &Transaction<'_>, schema: &str) -> Result<(), BackendError> {
    tx.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", quote(schema)))
        .await
        .map_err(failed("removing the rebuild's shadow schema"))
}

/// Projection `name`'s row in `schema`, if that schema holds checkpoints.
async fn load(
    tx: &Transaction<'_>,
    schema: &str,
    name: &str,
) -> Result<Option<Stored>, BackendError> {
    let table = format!("{}.annals_projections", quote(schema));
    if !exists(tx.client(), &table).await? {
        return Ok(None);
    }
    let row = tx
        .query_opt(&sql(LOAD_CHECKPOINT, schema), &[&name])
        .await
        .map_err(failed("reading the checkpoint"))?;
    row.map(|row| parse_stored(&row)).transpose()
}

fn parse_stored(row: &tokio_postgres::Row) -> Result<Stored, BackendError> {
    let read = || {
        Ok::<_, tokio_postgres::Error>((
            row.try_get::<_, i64>(0)?,
            row.try_get::<_, i64>(1)?,
            row.try_get::<_, Option<uuid::Uuid>>(2)?,
            row.try_get::<_, Vec<String>>(3)?,
        ))
    };
    let (version, position, event_id, tables) = read().map_err(failed("reading the checkpoint"))?;
    let event_id = event_id.map(stored_event_id).transpose()?;
    Ok(Stored {
        checkpoint: stored_checkpoint(version, position, event_id)?,
        tables,
    })
}

/// Moves the checkpoint from `from` to `checkpoint` and records `skipped`.
async fn save(
    tx: &Transaction<'_>,
    schema: &str,
    name: &str,
    checkpoint: Checkpoint,
    from: Position,
    skipped: Option<&SkippedEvent>,
) -> Result<(), BackendError> {
    let moved = tx
        .execute(
            &sql(SAVE_CHECKPOINT, schema),
            &[
                &name,
                &i64::from(checkpoint.version),
                &position_column(checkpoint.position)?,
                &checkpoint.event_id.map(|id| *id.as_uuid()),
                &position_column(from)?,
            ],
        )
        .await
        .map_err(failed("saving the checkpoint"))?;
    if moved == 0 {
        return Err(BackendError::new(
            BackendErrorKind::Busy,
            format!(
                "the checkpoint is no longer at {from}: another runner is applying \
                 this projection, or its row was changed"
            ),
        ));
    }
    if let Some(skipped) = skipped {
        tx.execute(
            &sql(RECORD_SKIPPED, schema),
            &[
                &name,
                &position_column(skipped.position)?,
                skipped.event_id.as_uuid(),
                &skipped.event_type.as_str(),
                &skipped.error,
                &skipped.skipped_at.as_unix_micros(),
            ],
        )
        .await
        .map_err(failed("recording a skipped event"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_lower_case_identifiers() {
        for good in ["read_models", "_x", "m2", &"a".repeat(63)] {
            assert_eq!(check_schema(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "Models",
            "2models",
            "read-models",
            "models; DROP TABLE x",
            "\"models\"",
            "modèles",
            "pg_models",
            "information_schema",
            "annals_rebuild_1",
            &"a".repeat(64),
        ] {
            assert!(check_schema(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn shadow_names_are_stable_and_fit_in_an_identifier() {
        assert_eq!(fnv1a(&["a", "b"]), fnv1a(&["a", "b"]));
        assert_ne!(fnv1a(&["ab", ""]), fnv1a(&["a", "b"]));
        let shadow = format!("{SHADOW_PREFIX}{:016x}", fnv1a(&[&"a".repeat(63), "x"]));
        assert!(shadow.len() <= MAX_SCHEMA_LEN);
    }
}
