//! The SQLite store keeps every guarantee of the store contract.
use std::sync::atomic::{AtomicUsize, Ordering};

use annals_core::testkit::conformance;
use annals_sqlite::{Durability, SqliteStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_keeps_the_store_contract() {
    // Each case gets a fresh database file that is removed when the case ends.
    conformance::run(SqliteStore::open_temporary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_on_a_named_file_with_relaxed_durability_keeps_the_store_contract() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let count = AtomicUsize::new(0);
    conformance::run(|| {
        let path = dir
            .path()
            .join(format!("case-{}.db", count.fetch_add(1, Ordering::SeqCst)));
        SqliteStore::options()
            .path(path)
            .durability(Durability::Relaxed)
            .open()
    })
    .await;
}

#[tokio::test]
async fn sqlite_store_keeps_the_snapshot_contract() {
    conformance::run_snapshots(SqliteStore::open_temporary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_keeps_the_checkpoint_contract() {
    conformance::run_checkpoints(SqliteStore::open_temporary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_keeps_the_handler_request_contract() {
    conformance::run_handler_requests(SqliteStore::open_temporary).await;
}
