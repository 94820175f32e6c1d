//! `annals::Error` keeps what a caller branches on: after `?`, a conflict
//! is still a conflict and a refusal still the aggregate's own error.

use annals::prelude::*;
use annals::{CommandContext, Error, ExpectedVersion, InMemoryStore, NewEvent, Repository};
use annals_core::testkit::bank::{Account, AccountCommand, AccountEvent, BankError};

/// A handler as an application writes it: one error type, `?` everywhere.
async fn withdraw_after_a_racing_deposit(store: &InMemoryStore) -> Result<(), Error> {
    let accounts = Repository::<Account, _>::new(store.clone())?;
    let ctx = CommandContext::new();
    accounts
        .execute(
            "1",
            AccountCommand::Open {
                owner: "ada".into(),
            },
            &ctx,
        )
        .await?;
    let loaded = accounts.load("1").await?;
    // Another writer appends after the load...
    accounts
        .execute("1", AccountCommand::Deposit { amount: 5 }, &ctx)
        .await?;
    // ...so an append with the loaded version is refused.
    let deposit =
        NewEvent::from_domain(&AccountEvent::Deposited { amount: 1 }, Default::default())?;
    store
        .append_to_stream(
            &accounts.stream_id("1")?,
            ExpectedVersion::Exact(loaded.version),
            vec![deposit],
        )
        .await?;
    Ok(())
}

#[tokio::test]
async fn conflict_is_matchable_through_annals_error_after_question_mark() {
    let store = InMemoryStore::new();
    let err = withdraw_after_a_racing_deposit(&store).await.unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
    assert!(
        matches!(
            &err,
            Error::Append(annals::AppendError::Conflict { stream, .. }) if stream.as_str() == "account-1"
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn refusal_through_annals_error_names_the_stream_and_keeps_the_aggregates_error() {
    async fn overdraw() -> Result<(), Error> {
        let accounts = Repository::<Account, _>::new(InMemoryStore::new())?;
        let ctx = CommandContext::new();
        accounts
            .execute(
                "7",
                AccountCommand::Open {
                    owner: "ada".into(),
                },
                &ctx,
            )
            .await?;
        accounts
            .execute("7", AccountCommand::Withdraw { amount: 3 }, &ctx)
            .await?;
        Ok(())
    }
    let err = overdraw().await.unwrap_err();
    assert_eq!(
        err.refusal::<BankError>(),
        Some(&BankError::InsufficientFunds {
            balance: 0,
            requested: 3
        })
    );
    assert!(!err.is_conflict());
    let message = err.to_string();
    assert!(
        message.contains("account-7") && message.contains("insufficient funds"),
        "{message}"
    );
}
