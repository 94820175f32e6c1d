//! The snapshot store contract: the newest snapshot per stream, kept exactly.

use std::sync::Arc;

use super::{ensure, stream, CaseResult, Options, Step};
use crate::store::Snapshot;
use crate::{Payload, SnapshotStore, Timestamp};

fn snapshot(stream_id: &str, version: u64, state: &str) -> Snapshot {
    Snapshot {
        stream_id: stream(stream_id),
        version,
        state_version: 3,
        state: Payload::from_json(state).expect("valid JSON"),
        taken_at: Timestamp::from_unix_micros(1_700_000_000_000_000),
    }
}

/// Guarantee 1: a stream without a snapshot loads as `None`.
pub(crate) async fn missing_snapshot_loads_as_none(
    store: Arc<dyn SnapshotStore>,
    _: Options,
) -> CaseResult {
    let loaded = store
        .load_snapshot(&stream("account-1"))
        .await
        .step("load")?;
    ensure!(loaded.is_none(), "a missing snapshot loaded as {loaded:?}");
    Ok(())
}

/// Guarantee 1: a saved snapshot loads back with every field, the state byte
/// for byte.
pub(crate) async fn saved_snapshot_loads_back_exactly(
    store: Arc<dyn SnapshotStore>,
    _: Options,
) -> CaseResult {
    let saved = snapshot("account-1", 42, "{ \"balance\" : 1.50, \"owner\": \"é\" }");
    store.save_snapshot(saved.clone()).await.step("save")?;
    let loaded = store.load_snapshot(&saved.stream_id).await.step("load")?;
    ensure!(
        loaded.as_ref() == Some(&saved),
        "saved {saved:?}, loaded {loaded:?}"
    );
    Ok(())
}

/// Guarantee 2: a snapshot of a higher version replaces the stored one.
pub(crate) async fn newer_snapshot_replaces_an_older_one(
    store: Arc<dyn SnapshotStore>,
    _: Options,
) -> CaseResult {
    store
        .save_snapshot(snapshot("account-1", 10, r#"{"v":10}"#))
        .await
        .step("save 10")?;
    let newer = snapshot("account-1", 20, r#"{"v":20}"#);
    store.save_snapshot(newer.clone()).await.step("save 20")?;
    let loaded = store.load_snapshot(&newer.stream_id).await.step("load")?;
    ensure!(
        loaded.as_ref() == Some(&newer),
        "loaded {loaded:?}, expected version 20"
    );
    Ok(())
}

/// Guarantee 2: a snapshot of a lower version (a slow writer) never replaces
/// a newer one.
pub(crate) async fn older_snapshot_never_replaces_a_newer_one(
    store: Arc<dyn SnapshotStore>,
    _: Options,
) -> CaseResult {
    let newer = snapshot("account-1", 20, r#"{"v":20}"#);
    store.save_snapshot(newer.clone()).await.step("save 20")?;
    store
        .save_snapshot(snapshot("account-1", 10, r#"{"v":10}"#))
        .await
        .step("save 10")?;
    let loaded = store.load_snapshot(&newer.stream_id).await.step("load")?;
    ensure!(
        loaded.as_ref() == Some(&newer),
        "loaded {loaded:?}, expected version 20"
    );
    Ok(())
}

/// Guarantee 1: each stream has its own snapshot.
pub(crate) async fn snapshots_of_different_streams_are_separate(
    store: Arc<dyn SnapshotStore>,
    _: Options,
) -> CaseResult {
    let a = snapshot("account-1", 5, r#"{"a":1}"#);
    let b = snapshot("account-10", 7, r#"{"b":1}"#);
    store.save_snapshot(a.clone()).await.step("save a")?;
    store.save_snapshot(b.clone()).await.step("save b")?;
    let loaded_a = store.load_snapshot(&a.stream_id).await.step("load a")?;
    let loaded_b = store.load_snapshot(&b.stream_id).await.step("load b")?;
    ensure!(
        loaded_a.as_ref() == Some(&a),
        "stream a loaded {loaded_a:?}"
    );
    ensure!(
        loaded_b.as_ref() == Some(&b),
        "stream b loaded {loaded_b:?}"
    );
    Ok(())
}
