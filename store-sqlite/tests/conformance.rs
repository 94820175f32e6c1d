//! The SQLite store keeps every guarantee of the store contract.
use annals_core::testkit::conformance;
use annals_sqlite::{Durability, SqliteStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_keeps_the_store_contract() {
    // Each case gets a fresh database file that is removed when the case ends.
    conformance::run(SqliteStore::open_temporary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_with_relaxed_durability_keeps_the_store_contract() {
    conformance::run(|| {
        SqliteStore::open_temporary_with(SqliteStore::options().durability(Durability::Relaxed))
    })
    .await;
}
