//! The repository's aggregate cache: a command on a cached aggregate reads
//! nothing, a stale entry never lets an append through on stale state, and
//! the cache holds no more than its bound.

use std::error::Error;

use annals_core::testkit::bank::{Account, AccountCommand, AccountEvent, BankError};
use annals_core::testkit::CountingStore;
use annals_core::{
    CacheSize, CommandContext, CommandError, EventStoreExt, InMemoryStore, Repository, RetryPolicy,
    SnapshotPolicy, StreamId,
};

type TestResult = Result<(), Box<dyn Error>>;

fn ctx() -> CommandContext {
    CommandContext::new()
}

fn open(owner: &str) -> AccountCommand {
    AccountCommand::Open {
        owner: owner.into(),
    }
}

fn deposit(amount: u64) -> AccountCommand {
    AccountCommand::Deposit { amount }
}

#[tokio::test]
async fn command_on_a_cached_aggregate_reads_nothing() -> TestResult {
    let store = CountingStore::new(InMemoryStore::new());
    let accounts = Repository::<Account, _>::new(store.clone())?;
    accounts.execute("1", open("ada"), &ctx()).await?;
    let before = store.counts();
    let done = accounts.execute("1", deposit(5), &ctx()).await?;
    let after = store.counts();
    assert_eq!(
        after.reads, before.reads,
        "the cached command read the store"
    );
    assert_eq!(after.appends, before.appends + 1);
    assert_eq!((done.version, done.state.balance), (2, 5));
    // What the cache decided on is what the store holds.
    assert_eq!(accounts.load("1").await?.state, done.state);
    Ok(())
}

#[tokio::test]
async fn stale_cache_never_accepts_an_append_on_stale_state() -> TestResult {
    let store = InMemoryStore::new();
    let here = Repository::<Account, _>::new(store.clone())?;
    let elsewhere = Repository::<Account, _>::new(store.clone())?;
    here.execute("1", open("ada"), &ctx()).await?;
    here.execute("1", deposit(100), &ctx()).await?;
    // Another writer empties the account; `here` still caches 100.
    elsewhere.load("1").await?;
    elsewhere
        .execute("1", AccountCommand::Withdraw { amount: 100 }, &ctx())
        .await?;
    // On the stale state the withdrawal would pass; on fresh state it is
    // refused. No retry policy is needed: the stale decision is retried.
    let err = here
        .execute("1", AccountCommand::Withdraw { amount: 100 }, &ctx())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.refusal(),
            Some(BankError::InsufficientFunds {
                balance: 0,
                requested: 100
            })
        ),
        "{err:?}"
    );
    let stream = StreamId::new("account-1")?;
    let withdrawals = store
        .read_stream_to_end(&stream)
        .await?
        .iter()
        .filter(|e| {
            e.decode::<AccountEvent>().ok() == Some(AccountEvent::Withdrawn { amount: 100 })
        })
        .count();
    assert_eq!(withdrawals, 1, "only the fresh withdrawal is stored");
    Ok(())
}

#[tokio::test]
async fn stale_cache_decides_again_on_fresh_state_whatever_the_policy() -> TestResult {
    let store = InMemoryStore::new();
    let here = Repository::<Account, _>::new(store.clone())?.with_retry(RetryPolicy::never());
    let elsewhere = Repository::<Account, _>::new(store.clone())?;
    here.execute("1", open("ada"), &ctx()).await?;
    elsewhere.execute("1", deposit(7), &ctx()).await?;
    let done = here.execute("1", deposit(1), &ctx()).await?;
    assert_eq!(
        (done.version, done.state.balance),
        (3, 8),
        "decided again on the fresh state, with the other deposit in it"
    );
    Ok(())
}

#[tokio::test]
async fn cache_holds_at_most_its_bound_and_evicts_the_least_recently_used() -> TestResult {
    let store = CountingStore::new(InMemoryStore::new());
    let accounts = Repository::<Account, _>::new(store.clone())?.with_cache(CacheSize::entries(2));
    for id in ["1", "2", "3"] {
        accounts.execute(id, open(id), &ctx()).await?;
    }
    assert_eq!(accounts.cached(), 2);
    // "2" and "3" are cached: no read.
    let before = store.counts().reads;
    accounts.execute("3", deposit(1), &ctx()).await?;
    accounts.execute("2", deposit(1), &ctx()).await?;
    assert_eq!(store.counts().reads, before, "cached aggregates were read");
    // "1" was evicted: it is loaded again.
    accounts.execute("1", deposit(1), &ctx()).await?;
    assert!(
        store.counts().reads > before,
        "an evicted aggregate was not loaded"
    );
    assert_eq!(accounts.cached(), 2);
    Ok(())
}

#[tokio::test]
async fn cache_off_loads_every_command() -> TestResult {
    let store = CountingStore::new(InMemoryStore::new());
    let accounts = Repository::<Account, _>::new(store.clone())?.with_cache(CacheSize::none());
    accounts.execute("1", open("ada"), &ctx()).await?;
    let before = store.counts().reads;
    accounts.execute("1", deposit(1), &ctx()).await?;
    assert!(store.counts().reads > before);
    assert_eq!(accounts.cached(), 0);
    Ok(())
}

#[tokio::test]
async fn refused_command_on_a_cached_aggregate_leaves_it_cached_and_unchanged() -> TestResult {
    let store = CountingStore::new(InMemoryStore::new());
    let accounts = Repository::<Account, _>::new(store.clone())?;
    accounts.execute("1", open("ada"), &ctx()).await?;
    let err = accounts
        .execute("1", AccountCommand::Withdraw { amount: 1 }, &ctx())
        .await
        .unwrap_err();
    assert!(matches!(err, CommandError::Refused { .. }), "{err:?}");
    let before = store.counts().reads;
    let done = accounts.execute("1", deposit(3), &ctx()).await?;
    assert_eq!(store.counts().reads, before);
    assert_eq!((done.version, done.state.balance), (2, 3));
    Ok(())
}

#[tokio::test]
async fn cached_commands_keep_taking_snapshots() -> TestResult {
    let store = InMemoryStore::new();
    let accounts =
        Repository::<Account, _>::new(store.clone())?.with_snapshots(SnapshotPolicy::every(2));
    accounts.execute("1", open("ada"), &ctx()).await?;
    for _ in 0..4 {
        accounts.execute("1", deposit(1), &ctx()).await?;
    }
    // Snapshots are written in the background.
    let stream = StreamId::new("account-1")?;
    for _ in 0..100 {
        let snapshot = annals_core::SnapshotStore::load_snapshot(&store, &stream).await?;
        if snapshot.is_some_and(|s| s.version == 4) {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    Err("no snapshot of version 4 was taken".into())
}

#[tokio::test]
async fn stale_cache_never_refuses_a_command_that_fresh_state_accepts() -> TestResult {
    let store = InMemoryStore::new();
    let here = Repository::<Account, _>::new(store.clone())?;
    let elsewhere = Repository::<Account, _>::new(store.clone())?;
    here.execute("1", open("ada"), &ctx()).await?; // `here` caches a balance of 0
    elsewhere.execute("1", deposit(100), &ctx()).await?;
    // On the cached state this withdrawal is refused; no append would ever
    // reveal the staleness, so the refusal is decided again on fresh state.
    let done = here
        .execute("1", AccountCommand::Withdraw { amount: 50 }, &ctx())
        .await?;
    assert_eq!((done.version, done.state.balance), (3, 50));
    Ok(())
}
