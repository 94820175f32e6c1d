//! The repository starts loads from snapshots, ignores the ones it cannot
//! use, and never lets a snapshot fail a command.

use std::error::Error;
use std::time::Duration;

use annals_core::store::Snapshot;
use annals_core::testkit::bank::{Account, AccountCommand};
use annals_core::{
    AppendError, AppendOutcome, AppendRequest, BackendError, BackendErrorKind, CommandContext,
    EventStore, HeadWatch, InMemoryStore, Payload, Position, ReadAll, ReadError, ReadStream,
    RecordedEvent, Repository, SnapshotError, SnapshotPolicy, SnapshotStore, StreamId, Timestamp,
};
use async_trait::async_trait;

type TestResult = Result<(), Box<dyn Error>>;

async fn account_with_deposits(
    repo: &Repository<Account, impl EventStore>,
    id: &str,
    deposits: u64,
) -> Result<(), Box<dyn Error>> {
    let ctx = CommandContext::new();
    repo.execute(
        id,
        AccountCommand::Open {
            owner: "ada".into(),
        },
        &ctx,
    )
    .await?;
    for amount in 1..=deposits {
        repo.execute(id, AccountCommand::Deposit { amount }, &ctx)
            .await?;
    }
    Ok(())
}

/// Waits (boundedly) until the store holds a snapshot of `stream` that
/// passes `check`: snapshots are written in the background.
async fn snapshot_where(
    store: &impl SnapshotStore,
    stream: &StreamId,
    check: impl Fn(&Snapshot) -> bool,
) -> Result<Snapshot, Box<dyn Error>> {
    let wait = async {
        loop {
            if let Some(s) = store.load_snapshot(stream).await? {
                if check(&s) {
                    return Ok::<_, SnapshotError>(s);
                }
            }
            tokio::task::yield_now().await;
        }
    };
    Ok(tokio::time::timeout(Duration::from_secs(10), wait).await??)
}

#[tokio::test]
async fn load_from_a_snapshot_replays_only_the_tail_and_equals_full_replay() -> TestResult {
    let store = InMemoryStore::new();
    let snapshotting =
        Repository::<Account, _>::new(store.clone())?.with_snapshots(SnapshotPolicy::every(10));
    account_with_deposits(&snapshotting, "1", 24).await?;
    let stream = snapshotting.stream_id("1")?;
    let snapshot = snapshot_where(&store, &stream, |s| s.version >= 20).await?;
    assert_eq!(snapshot.state_version, 1);
    let from_snapshot = snapshotting.load("1").await?;
    let replayed = Repository::<Account, _>::new(store.clone())?
        .load("1")
        .await?;
    assert_eq!(from_snapshot.state, replayed.state);
    assert_eq!(from_snapshot.version, 25);
    assert_eq!(from_snapshot.replayed, 25 - snapshot.version);
    assert_eq!(replayed.replayed, 25);
    Ok(())
}

#[tokio::test]
async fn snapshot_of_another_state_version_is_ignored_and_replaced() -> TestResult {
    let store = InMemoryStore::new();
    let plain = Repository::<Account, _>::new(store.clone())?;
    account_with_deposits(&plain, "1", 4).await?;
    let stream = plain.stream_id("1")?;
    // A snapshot an older shape of the state wrote: its numbers are wrong
    // for today's code, so using it would give a wrong balance.
    store
        .save_snapshot(Snapshot {
            stream_id: stream.clone(),
            version: 5,
            state_version: 0,
            state: Payload::from_json(r#"{"open":true,"owner":"old","balance":999}"#)?,
            taken_at: Timestamp::now(),
        })
        .await?;
    let repo = plain.clone().with_snapshots(SnapshotPolicy::every(1));
    let loaded = repo.load("1").await?;
    assert_eq!((loaded.state.balance, loaded.replayed), (10, 5));
    let fresh = snapshot_where(&store, &stream, |s| s.state_version == 1).await?;
    assert_eq!(fresh.version, 5);
    Ok(())
}

#[tokio::test]
async fn snapshot_that_does_not_decode_is_ignored() -> TestResult {
    let store = InMemoryStore::new();
    let plain = Repository::<Account, _>::new(store.clone())?;
    account_with_deposits(&plain, "1", 2).await?;
    store
        .save_snapshot(Snapshot {
            stream_id: plain.stream_id("1")?,
            version: 3,
            state_version: 1,
            state: Payload::from_json(r#"{"unexpected":[]}"#)?,
            taken_at: Timestamp::now(),
        })
        .await?;
    let loaded = plain
        .with_snapshots(SnapshotPolicy::every(100))
        .load("1")
        .await?;
    assert_eq!((loaded.state.balance, loaded.replayed), (3, 3));
    Ok(())
}

#[tokio::test]
async fn snapshot_policy_when_asks_the_function() -> TestResult {
    let store = InMemoryStore::new();
    let repo = Repository::<Account, _>::new(store.clone())?
        .with_snapshots(SnapshotPolicy::when(|due| due.version == 3));
    account_with_deposits(&repo, "1", 5).await?;
    let stream = repo.stream_id("1")?;
    snapshot_where(&store, &stream, |_| true).await?;
    repo.load("1").await?;
    tokio::task::yield_now().await;
    let snapshot = store.load_snapshot(&stream).await?.ok_or("no snapshot")?;
    assert_eq!(
        snapshot.version, 3,
        "a version the function refused was snapshotted"
    );
    Ok(())
}

/// A store whose snapshot side always fails.
#[derive(Clone)]
struct BrokenSnapshots(InMemoryStore);

fn broken() -> BackendError {
    BackendError::new(BackendErrorKind::Io, "the snapshot table is gone")
}

#[async_trait]
impl SnapshotStore for BrokenSnapshots {
    async fn save_snapshot(&self, _: Snapshot) -> Result<(), SnapshotError> {
        Err(broken().into())
    }
    async fn load_snapshot(&self, _: &StreamId) -> Result<Option<Snapshot>, SnapshotError> {
        Err(broken().into())
    }
}

#[async_trait]
impl EventStore for BrokenSnapshots {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, AppendError> {
        self.0.append(request).await
    }
    async fn read_stream(
        &self,
        stream: &StreamId,
        read: ReadStream,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        self.0.read_stream(stream, read).await
    }
    async fn read_all(&self, read: ReadAll) -> Result<annals_core::Page, ReadError> {
        self.0.read_all(read).await
    }
    async fn head(&self) -> Result<Position, ReadError> {
        self.0.head().await
    }
    fn watch_head(&self) -> HeadWatch {
        self.0.watch_head()
    }
}

#[tokio::test]
async fn failing_snapshot_store_never_fails_a_command_or_a_load() -> TestResult {
    let repo = Repository::<Account, _>::new(BrokenSnapshots(InMemoryStore::new()))?
        .with_snapshots(SnapshotPolicy::every(1));
    account_with_deposits(&repo, "1", 3).await?;
    let loaded = repo.load("1").await?;
    assert_eq!(
        (loaded.state.balance, loaded.version, loaded.replayed),
        (6, 4, 4)
    );
    Ok(())
}
