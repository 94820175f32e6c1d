//! The repository loads, decides, appends with the loaded version, and
//! retries conflicts only when asked to.

use std::error::Error;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use annals_core::testkit::bank::{Account, AccountCommand, AccountEvent, BankError};
use annals_core::{
    ActualVersion, Aggregate, AppendError, AppendOutcome, AppendRequest, CommandContext,
    CommandError, DecodeError, DomainEvent, EncodeError, EventStore, EventStoreExt,
    ExpectedVersion, HeadWatch, InMemoryStore, LoadError, NewEvent, Page, Payload, PayloadError,
    Position, ReadAll, ReadError, ReadStream, RecordedEvent, Repository, RetryPolicy, StreamId,
};
use async_trait::async_trait;

type TestResult = Result<(), Box<dyn Error>>;

fn open(owner: &str) -> AccountCommand {
    AccountCommand::Open {
        owner: owner.into(),
    }
}

async fn opened_account(id: &str) -> Result<Repository<Account, InMemoryStore>, Box<dyn Error>> {
    let repo = Repository::new(InMemoryStore::new())?;
    repo.execute(id, open("ada"), &CommandContext::new())
        .await?;
    Ok(repo)
}

/// A store on which another writer slips one deposit in before each of the
/// first `races` appends, as a concurrent request would.
struct RacingStore {
    inner: InMemoryStore,
    races: std::sync::atomic::AtomicU32,
    raced: AtomicBool,
}

impl RacingStore {
    fn new(inner: InMemoryStore, races: u32) -> Self {
        RacingStore {
            inner,
            races: races.into(),
            raced: AtomicBool::new(false),
        }
    }
}

#[async_trait]
impl EventStore for RacingStore {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, AppendError> {
        let left = self.races.load(Ordering::SeqCst);
        if left > 0 {
            self.races.store(left - 1, Ordering::SeqCst);
            self.raced.store(true, Ordering::SeqCst);
            let stream = request.streams()[0].stream.clone();
            let deposit =
                NewEvent::from_domain(&AccountEvent::Deposited { amount: 1 }, Default::default())
                    .map_err(|e| std::io::Error::other(e.to_string()))
                    .expect("a deposit encodes");
            self.inner
                .append_to_stream(&stream, ExpectedVersion::Any, vec![deposit])
                .await?;
        }
        self.inner.append(request).await
    }
    async fn read_stream(
        &self,
        stream: &StreamId,
        read: ReadStream,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        self.inner.read_stream(stream, read).await
    }
    async fn read_all(&self, read: ReadAll) -> Result<Page, ReadError> {
        self.inner.read_all(read).await
    }
    async fn head(&self) -> Result<Position, ReadError> {
        self.inner.head().await
    }
    fn watch_head(&self) -> HeadWatch {
        self.inner.watch_head()
    }
}

/// An opened account "1" and a repository on which `races` deposits slip in
/// before its appends, retrying conflicts `retries` times.
async fn racing_repository(
    races: u32,
    retries: u32,
) -> Result<(InMemoryStore, Repository<Account, RacingStore>), Box<dyn Error>> {
    let store = InMemoryStore::new();
    Repository::<Account, _>::new(store.clone())?
        .execute("1", open("ada"), &CommandContext::new())
        .await?;
    let repo = Repository::<Account, _>::new(RacingStore::new(store.clone(), races))?
        .with_retry(RetryPolicy::on_conflict(retries));
    Ok((store, repo))
}

async fn deposit_five(
    repo: &Repository<Account, RacingStore>,
) -> Result<annals_core::Executed<Account>, CommandError<BankError>> {
    repo.execute(
        "1",
        AccountCommand::Deposit { amount: 5 },
        &CommandContext::new(),
    )
    .await
}

#[tokio::test]
async fn execute_appends_with_the_loaded_version_and_returns_what_was_recorded() -> TestResult {
    let repo = opened_account("1").await?;
    let done = repo
        .execute(
            "1",
            AccountCommand::Deposit { amount: 40 },
            &CommandContext::new(),
        )
        .await?;
    assert_eq!(done.version, 2);
    assert_eq!(done.state.balance, 40);
    assert_eq!(done.events.len(), 1);
    assert_eq!(done.events[0].stream_id.as_str(), "account-1");
    assert_eq!(done.events[0].event_type, "Deposited");
    assert_eq!(done.events[0].payload.as_str(), r#"{"amount":40}"#);
    let loaded = repo.load("1").await?;
    assert_eq!((loaded.version, loaded.state.balance), (2, 40));
    Ok(())
}

#[tokio::test]
async fn loading_a_new_aggregate_gives_the_default_state_at_version_zero() -> TestResult {
    let repo = Repository::<Account, _>::new(InMemoryStore::new())?;
    let loaded = repo.load("nobody").await?;
    assert_eq!((loaded.version, loaded.state), (0, Account::default()));
    Ok(())
}

#[tokio::test]
async fn command_refused_by_the_aggregate_fails_with_domain_and_writes_nothing() -> TestResult {
    let repo = opened_account("1").await?;
    let err = repo
        .execute(
            "1",
            AccountCommand::Withdraw { amount: 5 },
            &CommandContext::new(),
        )
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        CommandError::Refused {
            error: BankError::InsufficientFunds {
                balance: 0,
                requested: 5
            },
            ..
        }
    ));
    assert_eq!(repo.store().head().await?, Position(1));
    Ok(())
}

#[tokio::test]
async fn command_for_an_invalid_id_fails_with_invalid_id() -> TestResult {
    let repo = Repository::<Account, _>::new(InMemoryStore::new())?;
    for id in ["", "a\nb", " padded"] {
        let err = repo
            .execute(id, open("ada"), &CommandContext::new())
            .await
            .unwrap_err();
        assert!(
            matches!(err, CommandError::Load(LoadError::InvalidId(_))),
            "{id:?}: {err:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn conflict_fails_with_conflict_when_no_retry_is_allowed() -> TestResult {
    let (store, repo) = racing_repository(1, 0).await?;
    let err = deposit_five(&repo).await.unwrap_err();
    assert!(err.is_conflict());
    match err {
        CommandError::Append(AppendError::Conflict {
            stream,
            expected,
            actual,
        }) => {
            assert_eq!(stream.as_str(), "account-1");
            assert_eq!(expected, ExpectedVersion::Exact(1));
            assert_eq!(actual, ActualVersion::At(2));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    // Only the racing deposit is stored.
    assert_eq!(
        store.stream_version(&StreamId::new("account-1")?).await?,
        Some(2)
    );
    Ok(())
}

#[tokio::test]
async fn conflict_is_decided_again_on_fresh_state_under_a_retry_policy() -> TestResult {
    let (_, repo) = racing_repository(2, 2).await?;
    let done = deposit_five(&repo).await?;
    // Two racing deposits of 1, then ours of 5 on top of them.
    assert_eq!((done.version, done.state.balance), (4, 7));
    Ok(())
}

#[tokio::test]
async fn conflict_fails_with_conflict_once_retries_are_used_up() -> TestResult {
    let (_, repo) = racing_repository(3, 2).await?;
    let err = deposit_five(&repo).await.unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn events_carry_the_command_context_metadata() -> TestResult {
    let repo = opened_account("1").await?;
    let correlation = uuid::Uuid::now_v7();
    let ctx = CommandContext::new()
        .correlation_id(correlation)
        .tenant("acme")
        .field("user", "ada");
    let done = repo
        .execute("1", AccountCommand::Deposit { amount: 1 }, &ctx)
        .await?;
    let stored = &repo
        .store()
        .read_stream_to_end(&StreamId::new("account-1")?)
        .await?[1];
    assert_eq!(&stored.metadata, ctx.metadata());
    assert_eq!(stored, &done.events[0]);

    let follow_up = CommandContext::caused_by(stored);
    assert_eq!(
        follow_up.metadata().causation_id,
        Some(*stored.event_id.as_uuid())
    );
    assert_eq!(follow_up.metadata().correlation_id, Some(correlation));
    assert_eq!(follow_up.metadata().tenant.as_deref(), Some("acme"));
    Ok(())
}

#[tokio::test]
async fn load_fails_with_decode_naming_stream_version_and_type() -> TestResult {
    let repo = opened_account("1").await?;
    let stream = StreamId::new("account-1")?;
    let alien = NewEvent::new("Frozen", 1, Payload::from_json("{}")?)?;
    repo.store()
        .append_to_stream(&stream, ExpectedVersion::Exact(1), vec![alien])
        .await?;
    let err = repo.load("1").await.unwrap_err();
    match err {
        LoadError::Decode(annals_core::EventDecodeError {
            stream: s,
            version,
            position,
            source,
            ..
        }) => {
            assert_eq!((s, version, position), (stream, 2, Position(2)));
            assert_eq!(
                source,
                DecodeError::UnknownEventType {
                    event_type: "Frozen".into()
                }
            );
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn load_fails_with_future_schema_version() -> TestResult {
    let repo = opened_account("1").await?;
    let stream = StreamId::new("account-1")?;
    let newer = NewEvent::new("Deposited", 9, Payload::from_json(r#"{"amount":1}"#)?)?;
    repo.store()
        .append_to_stream(&stream, ExpectedVersion::Exact(1), vec![newer])
        .await?;
    let err = repo.load("1").await.unwrap_err();
    assert!(
        matches!(
            &err,
            LoadError::Decode(annals_core::EventDecodeError {
                source: DecodeError::FutureSchemaVersion {
                    found: 9,
                    newest: 1,
                    ..
                },
                ..
            })
        ),
        "{err:?}"
    );
    Ok(())
}

/// An aggregate whose events can hold a float, to reach the encode error.
#[derive(Debug, Default, Clone)]
struct Thermometer;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, DomainEvent)]
enum Reading {
    Measured { celsius: f64 },
}

impl Aggregate for Thermometer {
    const CATEGORY: &'static str = "thermometer";
    type Event = Reading;
    type Command = f64;
    type Error = std::convert::Infallible;
    fn apply(&mut self, _: &Reading) {}
    fn handle(&self, celsius: f64) -> Result<Vec<Reading>, Self::Error> {
        Ok(vec![Reading::Measured { celsius }])
    }
}

#[tokio::test]
async fn event_that_json_cannot_hold_fails_with_encode_and_writes_nothing() -> TestResult {
    let repo = Repository::<Thermometer, _>::new(InMemoryStore::new())?;
    let err = repo
        .execute("1", f64::NAN, &CommandContext::new())
        .await
        .unwrap_err();
    match err {
        CommandError::Encode(EncodeError::Payload { event_type, source }) => {
            assert_eq!(event_type, "Measured");
            assert_eq!(
                source,
                PayloadError::NonFiniteFloat {
                    field: Some("celsius".into())
                }
            );
        }
        other => panic!("expected an encode error, got {other:?}"),
    }
    assert_eq!(repo.store().head().await?, Position::START);
    Ok(())
}

#[tokio::test]
async fn repository_works_on_a_shared_dyn_store() -> TestResult {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    let repo = Repository::<Account, _>::new(store.clone())?;
    repo.execute("1", open("ada"), &CommandContext::new())
        .await?;
    assert_eq!(store.head().await?, Position(1));
    Ok(())
}

/// An aggregate whose category would make `{category}-{id}` ambiguous.
#[derive(Debug, Default, Clone)]
struct DashedAccount;

impl Aggregate for DashedAccount {
    const CATEGORY: &'static str = "bank-account";
    type Event = AccountEvent;
    type Command = ();
    type Error = std::convert::Infallible;
    fn apply(&mut self, _: &AccountEvent) {}
    fn handle(&self, (): ()) -> Result<Vec<AccountEvent>, Self::Error> {
        Ok(Vec::new())
    }
}

#[test]
fn repository_for_a_category_with_a_dash_fails_with_invalid_category_when_built() {
    match Repository::<DashedAccount, _>::new(InMemoryStore::new()) {
        Err(annals_core::AggregateError::InvalidCategory { source }) => {
            assert_eq!(source.problem, annals_core::NameProblem::DashInCategory)
        }
        Err(other) => panic!("expected InvalidCategory, got {other:?}"),
        Ok(_) => panic!("a category with a dash was accepted"),
    }
}
