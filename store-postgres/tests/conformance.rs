//! The PostgreSQL store keeps every guarantee of the store contract, on a
//! real server (`ANNALS_PG_URL`); each case gets a schema of its own.
use annals_core::testkit::conformance;
use annals_postgres::testing::{url_or_skip, Schemas};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_keeps_the_store_contract() {
    let Some(url) = url_or_skip("postgres_store_keeps_the_store_contract") else {
        return;
    };
    let schemas = Schemas::new(url, "conformance");
    conformance::run(|| schemas.store()).await;
    schemas.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_keeps_the_snapshot_contract() {
    let Some(url) = url_or_skip("postgres_store_keeps_the_snapshot_contract") else {
        return;
    };
    let schemas = Schemas::new(url, "snapshots");
    conformance::run_snapshots(|| schemas.store()).await;
    schemas.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_keeps_the_checkpoint_contract() {
    let Some(url) = url_or_skip("postgres_store_keeps_the_checkpoint_contract") else {
        return;
    };
    let schemas = Schemas::new(url, "checkpoints");
    conformance::run_checkpoints(|| schemas.store()).await;
    schemas.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_keeps_the_handler_request_contract() {
    let Some(url) = url_or_skip("postgres_store_keeps_the_handler_request_contract") else {
        return;
    };
    let schemas = Schemas::new(url, "requests");
    conformance::run_handler_requests(|| schemas.store()).await;
    schemas.drop_all().await;
}
