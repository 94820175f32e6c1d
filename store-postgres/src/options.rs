//! How a PostgreSQL store is opened: the server, the schema, the pool and
//! the timeouts.

use std::str::FromStr;
use std::time::Duration;

use annals_core::Limits;

use crate::error::OpenError;
use crate::name::SchemaName;

/// The schema a store uses unless told otherwise.
pub const DEFAULT_SCHEMA: &str = "annals";

/// Options for [`PostgresStore`](crate::PostgresStore), built from
/// [`PostgresStore::options`](crate::PostgresStore::options).
///
/// ```no_run
/// use std::time::Duration;
/// use annals_postgres::PostgresStore;
///
/// # async fn demo() -> Result<(), annals_postgres::OpenError> {
/// let store = PostgresStore::options()
///     .url("postgres://app@db.internal/orders")
///     .schema("orders_events")
///     .pool_size(16)
///     .statement_timeout(Duration::from_secs(10))
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    pub(crate) url: Option<String>,
    pub(crate) schema: String,
    pub(crate) pool_size: usize,
    pub(crate) pool_wait: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) statement_timeout: Option<Duration>,
    pub(crate) head_poll_interval: Duration,
    pub(crate) migrate: bool,
    pub(crate) max_group: usize,
    pub(crate) limits: Limits,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            url: None,
            schema: DEFAULT_SCHEMA.to_owned(),
            pool_size: 10,
            pool_wait: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Some(Duration::from_secs(30)),
            head_poll_interval: Duration::from_secs(1),
            migrate: true,
            max_group: 512,
            limits: Limits::default(),
        }
    }
}

impl PostgresOptions {
    /// The server and database, as a libpq-style URL
    /// (`postgres://user@host:5432/db`) or key-value string
    /// (`host=localhost user=app dbname=db`).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// The schema that holds the store's tables (default `annals`): one
    /// database can hold several isolated stores. A lower-case identifier
    /// (`[a-z_][a-z0-9_]*`) of at most 63 bytes; created if missing.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// How many connections reads, checkpoints and handler requests share
    /// (default 10). Appends have one connection of their own.
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
    }

    /// How long a call waits for a free pooled connection before it fails
    /// with [`BackendErrorKind::Busy`](annals_core::BackendErrorKind::Busy)
    /// (default 5 s).
    pub fn pool_wait(mut self, wait: Duration) -> Self {
        self.pool_wait = wait;
        self
    }

    /// How long connecting may take before it fails (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The server's `statement_timeout` on every connection of the store
    /// (default 30 s); a statement that runs longer fails with
    /// [`BackendErrorKind::Timeout`](annals_core::BackendErrorKind::Timeout).
    /// `None` leaves the server's setting.
    pub fn statement_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.statement_timeout = timeout.into();
        self
    }

    /// How often a watched store reads the head as well as listening for
    /// notifications (default 1 s): a fallback should a notification go
    /// missing, as it does while the listening connection is being
    /// re-established.
    pub fn head_poll_interval(mut self, interval: Duration) -> Self {
        self.head_poll_interval = interval;
        self
    }

    /// Whether opening creates or migrates the schema (default `true`).
    /// With `false`, a missing or older schema is refused with
    /// [`OpenError::NotMigrated`] and [`PostgresOptions::migrate`] does it.
    pub fn migrate_on_open(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// The most appends one transaction commits together (default 512).
    pub fn max_group(mut self, appends: usize) -> Self {
        self.max_group = appends;
        self
    }

    /// The limits each append is checked against.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub(crate) fn check(&self) -> Result<(SchemaName, tokio_postgres::Config), OpenError> {
        let schema = SchemaName::new(&self.schema)?;
        let invalid = |setting, reason: &str| OpenError::InvalidOptions {
            setting,
            reason: reason.to_owned(),
        };
        if self.pool_size == 0 {
            return Err(invalid("pool_size", "must be at least 1"));
        }
        if self.max_group == 0 {
            return Err(invalid("max_group", "must be at least 1"));
        }
        if self.head_poll_interval.is_zero() {
            return Err(invalid("head_poll_interval", "must be above zero"));
        }
        if self.statement_timeout.is_some_and(|t| t.as_millis() == 0) {
            return Err(invalid(
                "statement_timeout",
                "must be at least 1 ms (None leaves the server's setting)",
            ));
        }
        let url = self
            .url
            .as_deref()
            .ok_or_else(|| invalid("url", "no server given"))?;
        let mut config = tokio_postgres::Config::from_str(url).map_err(|e| {
            // The driver's message can quote the URL, password and all: keep
            // only that it did not parse.
            drop(e);
            invalid("url", "not a PostgreSQL connection URL or key-value string")
        })?;
        config.connect_timeout(self.connect_timeout);
        config.application_name(ROLE_POOL);
        if let Some(timeout) = self.statement_timeout {
            config.options(format!("-c statement_timeout={}", timeout.as_millis()));
        }
        Ok((schema, config))
    }
}

/// The `application_name` of the store's pooled connections; the writer's
/// and the head listener's have their own, so that an operator (or a
/// test) can tell them apart in `pg_stat_activity`.
pub(crate) const ROLE_POOL: &str = "annals";
/// The writer's `application_name`.
pub(crate) const ROLE_WRITER: &str = "annals-writer";
/// The head listener's `application_name`.
pub(crate) const ROLE_LISTENER: &str = "annals-listener";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_options_are_refused_before_connecting() {
        let base = || PostgresOptions::default().url("postgres://localhost/db");
        assert!(matches!(
            base().pool_size(0).check(),
            Err(OpenError::InvalidOptions {
                setting: "pool_size",
                ..
            })
        ));
        assert!(matches!(
            PostgresOptions::default().check(),
            Err(OpenError::InvalidOptions { setting: "url", .. })
        ));
        assert!(matches!(
            base().url("postgres://[::1").check(),
            Err(OpenError::InvalidOptions { setting: "url", .. })
        ));
        assert!(matches!(
            base().schema("Bad").check(),
            Err(OpenError::InvalidSchemaName { .. })
        ));
    }
}
