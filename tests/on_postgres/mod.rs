//! Running a read-side scenario on a PostgreSQL server: stores in fresh
//! schemas, more stores on one schema (as more processes would open it),
//! and the schemas dropped when the scenario ends, passed or failed.

// Each test file uses a part of it.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use annals::postgres::{OpenError, PostgresStore};
use annals::{EventStoreExt, ExpectedVersion, NewEvent, Position, StreamId};
use annals_core::testkit::bank::AccountEvent;
use annals_postgres::testing::{url_or_skip, Schemas};

/// What a scenario returns; `Send + Sync` so that it can run in a task.
pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// The server a scenario runs on, and the schemas it opened.
pub struct Server {
    schemas: Schemas,
}

impl Server {
    /// A store in a fresh schema.
    pub async fn store(&self) -> Result<PostgresStore, OpenError> {
        self.schemas.store().await
    }

    /// A store in a fresh schema that learns of commits only from
    /// notifications: it never polls the head on its own.
    pub async fn notified_store(&self) -> Result<PostgresStore, OpenError> {
        let options = self
            .schemas
            .options()
            .head_poll_interval(Duration::from_secs(3600));
        self.schemas.open(options).await
    }

    /// Another store on `store`'s schema, with connections, a writer and a
    /// listener of its own: what a second process opens.
    pub async fn same_schema(&self, store: &PostgresStore) -> Result<PostgresStore, OpenError> {
        let options = self.schemas.options().schema(store.schema());
        self.schemas.open(options).await
    }
}

/// Runs `scenario` on the server named by `ANNALS_PG_URL` (or prints why
/// `test` is skipped and passes), then drops every schema it opened, also
/// when it failed or panicked.
pub async fn on_postgres<F, Fut>(test: &str, scenario: F) -> TestResult
where
    F: FnOnce(std::sync::Arc<Server>) -> Fut,
    Fut: Future<Output = TestResult> + Send + 'static,
{
    let Some(url) = url_or_skip(test) else {
        return Ok(());
    };
    let server = std::sync::Arc::new(Server {
        schemas: Schemas::new(url, "annals_read_side"),
    });
    let outcome = tokio::spawn(scenario(server.clone())).await;
    server.schemas.drop_all().await;
    match outcome {
        Ok(result) => result,
        Err(failed) if failed.is_panic() => std::panic::resume_unwind(failed.into_panic()),
        Err(failed) => Err(failed.into()),
    }
}

/// Appends `events` to bank account `account`'s stream in one append;
/// returns the position of the last.
pub async fn record(
    store: &PostgresStore,
    account: &str,
    events: &[AccountEvent],
) -> Result<Position, Box<dyn std::error::Error + Send + Sync>> {
    let stream = StreamId::new(format!("account-{account}"))?;
    let events = events
        .iter()
        .map(|e| NewEvent::from_domain(e, Default::default()))
        .collect::<Result<Vec<_>, _>>()?;
    let outcome = store
        .append_to_stream(&stream, ExpectedVersion::Any, events)
        .await?;
    Ok(outcome.last_position().ok_or("an append records events")?)
}
