//! Running a scenario on a PostgreSQL server as well: a store in a fresh
//! schema, dropped when the scenario ends, whether it passed, failed or
//! panicked.

// Each test file uses a part of it.
#![allow(dead_code)]

use std::future::Future;
use std::panic::AssertUnwindSafe;

use annals_postgres::testing::{url_or_skip, Schemas};
use annals_postgres::{PostgresOptions, PostgresStore};
use futures_util::FutureExt;

/// What a scenario returns.
pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Runs `scenario` on a store in a fresh schema of the server named by
/// `ANNALS_PG_URL` (or prints why `test` is skipped and passes).
pub async fn with_store<F, Fut>(test: &str, scenario: F) -> TestResult
where
    F: FnOnce(PostgresStore) -> Fut,
    Fut: Future<Output = TestResult>,
{
    with_options(test, |options| options, scenario).await
}

/// As [`with_store`], with the store's options adjusted by `adjust` first.
pub async fn with_options<A, F, Fut>(test: &str, adjust: A, scenario: F) -> TestResult
where
    A: FnOnce(PostgresOptions) -> PostgresOptions,
    F: FnOnce(PostgresStore) -> Fut,
    Fut: Future<Output = TestResult>,
{
    let Some(url) = url_or_skip(test) else {
        return Ok(());
    };
    let schemas = Schemas::new(url, "annals_projections");
    let outcome = AssertUnwindSafe(async {
        let store = schemas.open(adjust(schemas.options())).await?;
        scenario(store).await
    })
    .catch_unwind()
    .await;
    schemas.drop_all().await;
    match outcome {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}
