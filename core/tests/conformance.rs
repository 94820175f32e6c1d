//! The in-memory store keeps every guarantee of the store contract.
use annals_core::testkit::conformance;
use annals_core::InMemoryStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_store_keeps_the_store_contract() {
    conformance::run(|| async { Ok::<_, std::convert::Infallible>(InMemoryStore::new()) }).await;
}

#[tokio::test]
async fn in_memory_store_keeps_the_snapshot_contract() {
    conformance::run_snapshots(|| async {
        Ok::<_, std::convert::Infallible>(InMemoryStore::new())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_store_keeps_the_checkpoint_contract() {
    conformance::run_checkpoints(|| async {
        Ok::<_, std::convert::Infallible>(InMemoryStore::new())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_store_keeps_the_handler_request_contract() {
    conformance::run_handler_requests(|| async {
        Ok::<_, std::convert::Infallible>(InMemoryStore::new())
    })
    .await;
}
