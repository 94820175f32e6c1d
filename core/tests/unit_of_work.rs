//! A unit of work decides on several aggregates and commits everything in
//! one atomic append, or nothing; a conflict runs the whole unit again.

use std::error::Error;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use annals_core::testkit::bank::{Account, AccountCommand, AccountEvent, BankError};
use annals_core::testkit::read_log;
use annals_core::{
    Aggregate, AppendError, CommandContext, CommandError, DomainEvent, EventStore, InMemoryStore,
    LoadError, Position, Repository, RetryPolicy, UnitOfWork,
};

type TestResult = Result<(), Box<dyn Error>>;
type BoxError = Box<dyn Error + Send + Sync>;

fn open(owner: &str) -> AccountCommand {
    AccountCommand::Open {
        owner: owner.into(),
    }
}

async fn funded(store: &InMemoryStore, id: &str, amount: u64) -> TestResult {
    let accounts = Repository::<Account, _>::new(store.clone())?;
    accounts
        .execute(id, open(id), &CommandContext::new())
        .await?;
    if amount > 0 {
        accounts
            .execute(
                id,
                AccountCommand::Deposit { amount },
                &CommandContext::new(),
            )
            .await?;
    }
    Ok(())
}

/// Moves money from one account to another in one unit.
async fn transfer(
    work: &UnitOfWork<InMemoryStore>,
    from: &'static str,
    to: &'static str,
    amount: u64,
) -> Result<annals_core::Done<u64>, BoxError> {
    work.run(&CommandContext::new(), |unit| async move {
        let paid = unit
            .execute::<Account>(from, AccountCommand::Withdraw { amount })
            .await?;
        unit.execute::<Account>(to, AccountCommand::Deposit { amount })
            .await?;
        Ok::<_, BoxError>(paid.balance)
    })
    .await
}

#[tokio::test]
async fn unit_commits_every_aggregate_it_decided_on_in_one_append() -> TestResult {
    let store = InMemoryStore::new();
    funded(&store, "a", 100).await?;
    funded(&store, "b", 0).await?;
    let work = UnitOfWork::new(store.clone());
    let done = transfer(&work, "a", "b", 30)
        .await
        .map_err(|e| e.to_string())?;
    assert_eq!(done.value, 70, "the unit's code sees its own decisions");
    let streams: Vec<&str> = done.events.iter().map(|e| e.stream_id.as_str()).collect();
    assert_eq!(streams, ["account-a", "account-b"]);
    let positions: Vec<Position> = done.events.iter().map(|e| e.position).collect();
    assert_eq!(
        positions,
        [Position(4), Position(5)],
        "one append, next to each other"
    );
    let accounts = Repository::<Account, _>::new(store)?;
    assert_eq!(accounts.load("a").await?.state.balance, 70);
    assert_eq!(accounts.load("b").await?.state.balance, 30);
    Ok(())
}

#[tokio::test]
async fn refused_command_in_a_unit_appends_nothing() -> TestResult {
    let store = InMemoryStore::new();
    funded(&store, "a", 10).await?;
    funded(&store, "b", 0).await?;
    let work = UnitOfWork::new(store.clone());
    let head = store.head().await?;
    let err = transfer(&work, "b", "a", 5).await.unwrap_err();
    let refused = err
        .downcast_ref::<CommandError<BankError>>()
        .and_then(CommandError::refusal);
    assert_eq!(
        refused,
        Some(&BankError::InsufficientFunds {
            balance: 0,
            requested: 5
        })
    );
    assert_eq!(store.head().await?, head, "a refused unit wrote something");
    Ok(())
}

#[tokio::test]
async fn refusal_is_a_value_the_unit_can_act_on() -> TestResult {
    let store = InMemoryStore::new();
    funded(&store, "a", 10).await?;
    let work = UnitOfWork::new(store.clone());
    // Try to withdraw too much; on refusal, withdraw what there is.
    let done = work
        .run(&CommandContext::new(), |unit| async move {
            let asked = AccountCommand::Withdraw { amount: 50 };
            match unit.execute::<Account>("a", asked).await {
                Ok(state) => Ok::<_, BoxError>(state.balance),
                Err(CommandError::Refused {
                    error: BankError::InsufficientFunds { balance, .. },
                    ..
                }) => {
                    let all = AccountCommand::Withdraw { amount: balance };
                    Ok(unit.execute::<Account>("a", all).await?.balance)
                }
                Err(other) => Err(other.into()),
            }
        })
        .await
        .map_err(|e| e.to_string())?;
    assert_eq!(done.value, 0);
    assert_eq!(done.events.len(), 1, "only the fallback was recorded");
    Ok(())
}

#[tokio::test]
async fn conflict_runs_the_whole_unit_again_on_fresh_state() -> TestResult {
    let store = InMemoryStore::new();
    funded(&store, "a", 100).await?;
    funded(&store, "b", 0).await?;
    let runs = Arc::new(AtomicU32::new(0));
    let work = UnitOfWork::new(store.clone()).with_retry(RetryPolicy::on_conflict(1));
    let done = work
        .run(&CommandContext::new(), |unit| {
            let (runs, store) = (runs.clone(), store.clone());
            async move {
                let balance = unit.load::<Account>("a").await?.balance;
                if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                    // Another writer moves "a" on between load and commit.
                    Repository::<Account, _>::new(store)?
                        .execute(
                            "a",
                            AccountCommand::Deposit { amount: 1 },
                            &CommandContext::new(),
                        )
                        .await?;
                }
                unit.execute::<Account>("a", AccountCommand::Withdraw { amount: balance })
                    .await?;
                Ok::<_, BoxError>(balance)
            }
        })
        .await
        .map_err(|e| e.to_string())?;
    assert_eq!(runs.load(Ordering::SeqCst), 2, "the unit ran again");
    assert_eq!(done.value, 101, "the second run saw the other deposit");
    let accounts = Repository::<Account, _>::new(store)?;
    assert_eq!(accounts.load("a").await?.state.balance, 0);
    Ok(())
}

#[tokio::test]
async fn conflict_without_a_retry_policy_fails_with_conflict_and_writes_nothing() -> TestResult {
    let store = InMemoryStore::new();
    funded(&store, "a", 100).await?;
    let work = UnitOfWork::new(store.clone());
    let err = work
        .run(&CommandContext::new(), |unit| {
            let store = store.clone();
            async move {
                unit.execute::<Account>("a", AccountCommand::Withdraw { amount: 10 })
                    .await?;
                Repository::<Account, _>::new(store)?
                    .execute(
                        "a",
                        AccountCommand::Deposit { amount: 1 },
                        &CommandContext::new(),
                    )
                    .await?;
                Ok::<_, BoxError>(())
            }
        })
        .await
        .unwrap_err();
    assert!(
        err.downcast_ref::<AppendError>()
            .is_some_and(AppendError::is_conflict),
        "{err}"
    );
    let withdrawn = read_log(&store)
        .await?
        .iter()
        .any(|e| e.decode::<AccountEvent>().ok() == Some(AccountEvent::Withdrawn { amount: 10 }));
    assert!(!withdrawn, "the conflicting unit wrote its withdrawal");
    Ok(())
}

#[tokio::test]
async fn unit_that_decides_nothing_appends_nothing() -> TestResult {
    let store = InMemoryStore::new();
    funded(&store, "a", 5).await?;
    let work = UnitOfWork::new(store.clone());
    let done = work
        .run(&CommandContext::new(), |unit| async move {
            Ok::<_, BoxError>(unit.load::<Account>("a").await?.balance)
        })
        .await
        .map_err(|e| e.to_string())?;
    assert_eq!((done.value, done.events.len()), (5, 0));
    assert_eq!(store.head().await?, Position(2));
    Ok(())
}

#[tokio::test]
async fn events_of_a_unit_carry_its_context() -> TestResult {
    let store = InMemoryStore::new();
    funded(&store, "a", 5).await?;
    let correlation = uuid::Uuid::now_v7();
    let ctx = CommandContext::new()
        .correlation_id(correlation)
        .tenant("acme");
    let done = UnitOfWork::new(store)
        .run(&ctx, |unit| async move {
            unit.execute::<Account>("a", AccountCommand::Deposit { amount: 1 })
                .await?;
            Ok::<_, BoxError>(())
        })
        .await
        .map_err(|e| e.to_string())?;
    let metadata = &done.events[0].metadata;
    assert_eq!(metadata.correlation_id, Some(correlation));
    assert_eq!(metadata.tenant.as_deref(), Some("acme"));
    Ok(())
}

/// Another aggregate type that shares the `account` category.
#[derive(Debug, Default, Clone)]
struct Audit;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, DomainEvent)]
enum AuditEvent {
    Noted,
}

impl Aggregate for Audit {
    const CATEGORY: &'static str = "account";
    type Event = AuditEvent;
    type Command = ();
    type Error = std::convert::Infallible;
    fn apply(&mut self, _: &AuditEvent) {}
    fn handle(&self, (): ()) -> Result<Vec<AuditEvent>, Self::Error> {
        Ok(vec![AuditEvent::Noted])
    }
}

#[tokio::test]
async fn one_stream_as_two_aggregate_types_fails_with_other_aggregate_type() -> TestResult {
    let store = InMemoryStore::new();
    let work = UnitOfWork::new(store);
    let err = work
        .run(&CommandContext::new(), |unit| async move {
            unit.load::<Account>("a").await?;
            unit.load::<Audit>("a").await?;
            Ok::<_, BoxError>(())
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.downcast_ref::<LoadError>(),
            Some(LoadError::OtherAggregateType { stream }) if stream.as_str() == "account-a"
        ),
        "{err}"
    );
    Ok(())
}
