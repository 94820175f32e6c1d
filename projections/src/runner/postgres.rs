//! Adding a PostgreSQL read model to the runner.

use std::sync::Arc;

use annals_core::EventStore;
use tokio_postgres::Config;

use super::{ListSkipped, Projections};
use crate::error::StartError;
use crate::postgres::{check_schema, skipped_events, ReadModel};
use crate::projection::PostgresProjection;
use crate::runner::target::PostgresTarget;
use crate::target::Target;

impl<S> Projections<S>
where
    S: EventStore + Clone + 'static,
{
    /// Adds a read model in schema `schema` of the PostgreSQL database at
    /// `url` (a URL, `postgres://user@host:5432/db`, or a `key=value`
    /// connection string), updated exactly once. The schema, its
    /// checkpoint tables and the projection's tables are created if
    /// missing.
    ///
    /// The schema name is a plain lower-case identifier
    /// (`[a-z_][a-z0-9_]*`, at most 63 bytes, not `pg_…`); several read
    /// models may share a schema, each with its own checkpoint there. The
    /// connection has no TLS: the database is on the same host or a private
    /// network. A connection attempt gives up after 10 seconds unless the
    /// URL says otherwise (`connect_timeout`).
    ///
    /// [`start`](Projections::start) fails with
    /// [`StartError::InvalidConnectionString`] or
    /// [`StartError::InvalidSchema`]; a server that cannot be reached fails
    /// the projection (its status, and every wait on it) with a backend
    /// error of kind [`Unavailable`](annals_core::BackendErrorKind::Unavailable).
    pub fn postgres<P: PostgresProjection>(self, url: &str, schema: &str, projection: P) -> Self {
        match url.parse::<Config>() {
            Ok(config) => self.postgres_config(config, schema, projection),
            Err(source) => self.refuse(StartError::InvalidConnectionString {
                projection: P::NAME,
                source,
            }),
        }
    }

    /// [`Projections::postgres`] with a connection configured in code.
    pub fn postgres_config<P: PostgresProjection>(
        self,
        config: Config,
        schema: &str,
        projection: P,
    ) -> Self {
        if let Err(reason) = check_schema(schema) {
            return self.refuse(StartError::InvalidSchema {
                projection: P::NAME,
                schema: schema.to_owned(),
                reason,
            });
        }
        let (listing, in_schema) = (config.clone(), schema.to_owned());
        let skipped: ListSkipped = Arc::new(move || {
            let (config, schema) = (listing.clone(), in_schema.clone());
            Box::pin(async move { skipped_events(&config, &schema, P::NAME).await })
        });
        let policy = projection.on_failure();
        let unknown = projection.on_unknown_event();
        let target = PostgresTarget::new(ReadModel::new(projection, config, schema.to_owned()));
        self.register::<P::Events>(P::NAME, P::VERSION, policy, unknown, skipped, move |_| {
            (Box::new(target) as Box<dyn Target<_>>, None)
        })
    }

    /// Remembers why [`start`](Projections::start) must fail (the first
    /// reason given).
    fn refuse(mut self, error: StartError) -> Self {
        self.invalid.get_or_insert(error);
        self
    }
}
