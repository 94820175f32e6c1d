//! Sagas: one atomic append per reaction, compensation, conflicts re-run,
//! deadlines that fire once and survive restarts, causation, and a second
//! runner that never acts twice.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use annals_core::{
    Aggregate, CheckpointStore, CommandContext, DomainEvent, EventSet, EventStore, EventStoreExt,
    InMemoryStore, Position, ReadAll, RecordedEvent, Repository,
};
use annals_projections::saga::{Input, ManualClock, Reaction, Saga, SagaState};
use annals_projections::testing::SagaTest;
use annals_projections::{Envelope, HandlerError, Projections};
use serde::{Deserialize, Serialize};

use crate::fixtures::TestResult;

// ---------------------------------------------------------------------------
// A small bank with transfers

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
pub enum PurseEvent {
    PurseOpened { cents: u64 },
    PurseClosed,
    Taken { cents: u64, transfer: String },
    Given { cents: u64, transfer: String },
    GivenBack { cents: u64, transfer: String },
}

#[derive(Debug, Clone)]
pub enum PurseCommand {
    Open(u64),
    Close,
    Take(u64, String),
    Give(u64, String),
    GiveBack(u64, String),
}

#[derive(Debug, thiserror::Error)]
pub enum PurseRefusal {
    #[error("the purse is closed")]
    Closed,
    #[error("not enough money")]
    Short,
}

#[derive(Debug, Default, Clone)]
pub struct Purse {
    pub cents: u64,
    pub closed: bool,
}

impl Aggregate for Purse {
    const CATEGORY: &'static str = "purse";
    type Event = PurseEvent;
    type Command = PurseCommand;
    type Error = PurseRefusal;

    fn apply(&mut self, event: &PurseEvent) {
        match event {
            PurseEvent::PurseOpened { cents } => self.cents = *cents,
            PurseEvent::PurseClosed => self.closed = true,
            PurseEvent::Taken { cents, .. } => self.cents -= cents,
            PurseEvent::Given { cents, .. } | PurseEvent::GivenBack { cents, .. } => {
                self.cents += cents
            }
        }
    }

    fn handle(&self, command: PurseCommand) -> Result<Vec<PurseEvent>, PurseRefusal> {
        Ok(vec![match command {
            PurseCommand::Open(cents) => PurseEvent::PurseOpened { cents },
            PurseCommand::GiveBack(cents, transfer) => PurseEvent::GivenBack { cents, transfer },
            _ if self.closed => return Err(PurseRefusal::Closed),
            PurseCommand::Close => PurseEvent::PurseClosed,
            PurseCommand::Take(cents, _) if cents > self.cents => return Err(PurseRefusal::Short),
            PurseCommand::Take(cents, transfer) => PurseEvent::Taken { cents, transfer },
            PurseCommand::Give(cents, transfer) => PurseEvent::Given { cents, transfer },
        }])
    }
}

/// Asks for a transfer: appended to `move-{id}` by the tests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
pub enum MoveEvent {
    MoveAsked {
        from: String,
        to: String,
        cents: u64,
    },
}

#[derive(Debug, EventSet)]
pub enum MoveInput {
    #[events(category = "move")]
    Move(MoveEvent),
    #[events(aggregate = Purse)]
    Purse(PurseEvent),
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct MoveState {
    pub from: String,
    pub to: String,
    pub cents: u64,
    pub ended: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
pub enum MoveStateEvent {
    MoveStarted {
        from: String,
        to: String,
        cents: u64,
    },
    MoveEnded {
        how: String,
    },
}

impl SagaState for MoveState {
    type Event = MoveStateEvent;
    fn apply(&mut self, event: &MoveStateEvent) {
        match event {
            MoveStateEvent::MoveStarted { from, to, cents } => {
                (self.from, self.to, self.cents) = (from.clone(), to.clone(), *cents)
            }
            MoveStateEvent::MoveEnded { how } => self.ended = Some(how.clone()),
        }
    }
}

/// Takes from the source on the request, gives to the target once the
/// take is in the log (giving back if the target refuses), and gives back
/// when the "expire" deadline fires first (set only for moves of 1,000 or
/// more, which wait for it).
#[derive(Default)]
pub struct Moves {
    /// Runs of `react`, to see conflicts re-run it.
    pub runs: Arc<AtomicU32>,
    /// Before the next reaction commits, a deposit lands on its source.
    pub interfere: Option<(InMemoryStore, Arc<AtomicBool>)>,
}

impl Moves {
    async fn end(reaction: &mut Reaction<Self>, how: String) {
        reaction.record(MoveStateEvent::MoveEnded { how });
        reaction.finish();
    }
}

#[annals_projections::async_trait]
impl Saga for Moves {
    type Events = MoveInput;
    type State = MoveState;
    const NAME: &'static str = "moves";

    fn instance(&self, event: &Envelope<MoveInput>) -> Option<String> {
        match &event.event {
            MoveInput::Move(_) => Some(event.stream_id.id().to_owned()),
            MoveInput::Purse(PurseEvent::Taken { transfer, .. }) => Some(transfer.clone()),
            MoveInput::Purse(_) => None,
        }
    }

    async fn react(
        &self,
        reaction: &mut Reaction<Self>,
        input: Input<'_, MoveInput>,
    ) -> Result<(), HandlerError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        let id = reaction.instance().to_owned();
        let event = match input {
            Input::Event(envelope) => &envelope.event,
            Input::Deadline(_) => {
                let MoveState { from, cents, .. } = reaction.state().clone();
                reaction
                    .execute::<Purse>(&from, PurseCommand::GiveBack(cents, id))
                    .await?;
                Self::end(reaction, "expired".into()).await;
                return Ok(());
            }
            _ => return Ok(()),
        };
        match event {
            MoveInput::Move(MoveEvent::MoveAsked { cents: 13, .. }) => {
                return Err("thirteen cents cannot be moved".into());
            }
            MoveInput::Move(MoveEvent::MoveAsked { from, to, cents }) => {
                reaction.record(MoveStateEvent::MoveStarted {
                    from: from.clone(),
                    to: to.clone(),
                    cents: *cents,
                });
                if let Some((store, once)) = &self.interfere {
                    reaction.load::<Purse>(from).await?;
                    if once.swap(false, Ordering::SeqCst) {
                        let stream = annals_core::StreamId::new(format!("purse-{from}"))?;
                        let event = annals_core::NewEvent::from_domain(
                            &PurseEvent::Given {
                                cents: 1,
                                transfer: "gift".into(),
                            },
                            Default::default(),
                        )?;
                        store
                            .append_to_stream(
                                &stream,
                                annals_core::ExpectedVersion::Any,
                                vec![event],
                            )
                            .await?;
                    }
                }
                match reaction
                    .execute::<Purse>(from, PurseCommand::Take(*cents, id))
                    .await
                {
                    Ok(_) if *cents >= 1_000 => {
                        reaction.schedule("expire", Duration::from_secs(60))
                    }
                    Ok(_) => {}
                    Err(error) => Self::end(reaction, format!("rejected: {error}")).await,
                }
            }
            MoveInput::Purse(PurseEvent::Taken { .. }) if reaction.state().cents < 1_000 => {
                let MoveState {
                    from, to, cents, ..
                } = reaction.state().clone();
                match reaction
                    .execute::<Purse>(&to, PurseCommand::Give(cents, id.clone()))
                    .await
                {
                    Ok(_) => Self::end(reaction, "completed".into()).await,
                    Err(error) if error.refusal().is_some() => {
                        reaction
                            .execute::<Purse>(&from, PurseCommand::GiveBack(cents, id))
                            .await?;
                        Self::end(reaction, "given back".into()).await;
                    }
                    Err(error) => return Err(error.into()),
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn asked(from: &str, to: &str, cents: u64) -> MoveEvent {
    MoveEvent::MoveAsked {
        from: from.into(),
        to: to.into(),
        cents,
    }
}

async fn open(store: &InMemoryStore, purses: &[(&str, u64)]) -> TestResult {
    let repo = Repository::<Purse, _>::new(store.clone())?;
    for (id, cents) in purses {
        repo.execute(id, PurseCommand::Open(*cents), &CommandContext::new())
            .await?;
    }
    Ok(())
}

async fn ask(store: &InMemoryStore, id: &str, event: MoveEvent, ctx: &CommandContext) -> Position {
    let stream = annals_core::StreamId::new(format!("move-{id}")).expect("valid");
    let new = annals_core::NewEvent::from_domain(&event, ctx.metadata().clone()).expect("encodes");
    store
        .append_to_stream(&stream, annals_core::ExpectedVersion::NoStream, vec![new])
        .await
        .expect("append")
        .last_position()
        .expect("one event")
}

async fn cents(store: &InMemoryStore, id: &str) -> u64 {
    Repository::<Purse, _>::new(store.clone())
        .expect("valid aggregate")
        .load(id)
        .await
        .expect("loads")
        .state
        .cents
}

async fn all_events(store: &InMemoryStore) -> Vec<RecordedEvent> {
    store
        .read_all(ReadAll::after(Position::START))
        .await
        .expect("read")
        .events
}

// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reaction_commits_its_commands_its_state_and_its_tracking_in_one_append() -> TestResult {
    let store = InMemoryStore::new();
    open(&store, &[("ada", 500), ("bob", 0)]).await?;
    let running = Projections::new(store.clone())
        .saga(Moves::default())
        .start()?;
    let asked_at = ask(
        &store,
        "m1",
        asked("ada", "bob", 200),
        &CommandContext::new(),
    )
    .await;
    running.wait_settled().await?;
    let events = all_events(&store).await;
    // The reaction to the request: the take and the instance's events, one
    // append right after the request.
    let first: Vec<_> = events
        .iter()
        .filter(|e| e.position > asked_at)
        .take(2)
        .map(|e| {
            (
                e.stream_id.as_str().to_owned(),
                e.event_type.as_str().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        first,
        [
            ("moves-m1".to_owned(), "MoveStarted".to_owned()),
            ("purse-ada".to_owned(), "Taken".to_owned()),
        ]
    );
    assert_eq!(
        (cents(&store, "ada").await, cents(&store, "bob").await),
        (300, 200)
    );
    let tracking = store.load_checkpoint("moves").await?.expect("tracked");
    assert!(tracking.position >= asked_at);
    running.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credit_is_compensated_by_giving_the_debit_back() -> TestResult {
    let store = InMemoryStore::new();
    open(&store, &[("ada", 500), ("bob", 0)]).await?;
    Repository::<Purse, _>::new(store.clone())?
        .execute("bob", PurseCommand::Close, &CommandContext::new())
        .await?;
    let running = Projections::new(store.clone())
        .saga(Moves::default())
        .start()?;
    ask(
        &store,
        "m1",
        asked("ada", "bob", 200),
        &CommandContext::new(),
    )
    .await;
    running.wait_settled().await?;
    assert_eq!(
        (cents(&store, "ada").await, cents(&store, "bob").await),
        (500, 0)
    );
    let instance = Repository::<annals_projections::saga::Instance<Moves>, _>::new(store.clone())?
        .load("m1")
        .await?
        .state;
    assert_eq!(instance.state.ended.as_deref(), Some("given back"));
    assert!(instance.finished);
    running.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reaction_whose_aggregate_changed_underneath_runs_again_on_fresh_state() -> TestResult {
    let store = InMemoryStore::new();
    open(&store, &[("ada", 500), ("bob", 0)]).await?;
    let saga = Moves {
        runs: Arc::new(AtomicU32::new(0)),
        interfere: Some((store.clone(), Arc::new(AtomicBool::new(true)))),
    };
    let runs = saga.runs.clone();
    let running = Projections::new(store.clone()).saga(saga).start()?;
    ask(
        &store,
        "m1",
        asked("ada", "bob", 500),
        &CommandContext::new(),
    )
    .await;
    running.wait_settled().await?;
    // The request ran twice (a conflict on purse-ada), the take once more:
    // as if the reaction had run alone after the gift.
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    assert_eq!(
        (cents(&store, "ada").await, cents(&store, "bob").await),
        (1, 500)
    );
    let takes = all_events(&store)
        .await
        .iter()
        .filter(|e| e.event_type.as_str() == "Taken")
        .count();
    assert_eq!(takes, 1);
    running.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_of_a_reaction_carry_its_cause_and_correlation() -> TestResult {
    let store = InMemoryStore::new();
    open(&store, &[("ada", 500), ("bob", 0)]).await?;
    let running = Projections::new(store.clone())
        .saga(Moves::default())
        .start()?;
    let correlation = uuid::Uuid::now_v7();
    let ctx = CommandContext::new().correlation_id(correlation);
    let asked_at = ask(&store, "m1", asked("ada", "bob", 50), &ctx).await;
    running.wait_settled().await?;
    let events = all_events(&store).await;
    let request = events
        .iter()
        .find(|e| e.position == asked_at)
        .expect("stored");
    let taken = events
        .iter()
        .find(|e| e.event_type.as_str() == "Taken")
        .expect("taken");
    let given = events
        .iter()
        .find(|e| e.event_type.as_str() == "Given")
        .expect("given");
    assert_eq!(
        taken.metadata.causation_id,
        Some(*request.event_id.as_uuid())
    );
    assert_eq!(given.metadata.causation_id, Some(*taken.event_id.as_uuid()));
    let caused: Vec<_> = events
        .iter()
        .filter(|e| e.metadata.correlation_id == Some(correlation))
        .map(|e| e.event_type.as_str())
        .collect();
    // One append per reaction; within one, the instance's events come
    // first (it is loaded first), then the aggregates'.
    assert_eq!(
        caused,
        [
            "MoveAsked",
            "MoveStarted",
            "Taken",
            "MoveEnded",
            "SagaFinished",
            "Given"
        ]
    );
    running.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_fires_once_after_a_restart_and_never_for_a_finished_instance() -> TestResult {
    let store = InMemoryStore::new();
    open(&store, &[("ada", 5_000), ("bob", 0)]).await?;
    let clock = ManualClock::default();
    let start = || {
        Projections::new(store.clone())
            .clock(clock.clone())
            .saga(Moves::default())
            .start()
    };
    let running = start()?;
    ask(
        &store,
        "big",
        asked("ada", "bob", 2_000),
        &CommandContext::new(),
    )
    .await;
    running.wait_settled().await?;
    assert_eq!(cents(&store, "ada").await, 3_000, "taken, waiting");
    running.stop().await;

    // Restarted, the deadline is still there; it fires when due, once.
    let running = start()?;
    running.wait_settled().await?;
    assert_eq!(cents(&store, "ada").await, 3_000, "not due yet");
    clock.advance(Duration::from_secs(61));
    running.wait_settled().await?;
    assert_eq!(
        cents(&store, "ada").await,
        5_000,
        "given back when it expired"
    );
    clock.advance(Duration::from_secs(3_600));
    running.wait_settled().await?;
    running.stop().await;
    let running = start()?;
    running.wait_settled().await?;
    running.stop().await;
    let fired = all_events(&store)
        .await
        .iter()
        .filter(|e| e.event_type.as_str() == "SagaDeadlineFired")
        .count();
    assert_eq!(fired, 1);
    assert_eq!(cents(&store, "ada").await, 5_000, "given back once");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runners_of_one_saga_never_act_twice() -> TestResult {
    let store = InMemoryStore::new();
    open(&store, &[("ada", 100_000), ("bob", 0)]).await?;
    // Batches of different sizes, so that one runner's batches overlap
    // the other's commits in every way.
    let first = Projections::new(store.clone())
        .batch_size(3)
        .saga(Moves::default())
        .start()?;
    let second = Projections::new(store.clone())
        .batch_size(7)
        .saga(Moves::default())
        .start()?;
    for n in 0..150 {
        let ctx = CommandContext::new();
        ask(&store, &format!("m{n}"), asked("ada", "bob", 10), &ctx).await;
        if n % 10 == 0 {
            tokio::task::yield_now().await;
        }
    }
    first.wait_settled().await?;
    second.wait_settled().await?;
    first.wait_settled().await?;
    assert_eq!(cents(&store, "bob").await, 1_500, "each move given once");
    assert_eq!(
        cents(&store, "ada").await,
        100_000 - 1_500,
        "each move taken once"
    );
    first.stop().await;
    second.stop().await;
    Ok(())
}

#[test]
fn saga_test_shows_what_one_reaction_decided() {
    SagaTest::new(Moves::default())
        .given("purse-ada", [PurseEvent::PurseOpened { cents: 500 }])
        .given(
            "purse-bob",
            [
                PurseEvent::PurseOpened { cents: 0 },
                PurseEvent::PurseClosed,
            ],
        )
        .given("move-m1", [asked("ada", "bob", 200)])
        .when("move-m2", asked("ada", "carol", 300))
        .then(|outcome| {
            // The first move was given back (bob's purse is closed), so
            // ada has the 300 to move.
            assert_eq!(
                outcome.events_of::<Purse>("ada"),
                [PurseEvent::Taken {
                    cents: 300,
                    transfer: "m2".into()
                }]
            );
            assert_eq!(
                outcome.events_of::<Purse>("carol"),
                [PurseEvent::Given {
                    cents: 300,
                    transfer: "m2".into()
                }]
            );
            assert_eq!(
                outcome.instance("m2").state.ended.as_deref(),
                Some("completed")
            );
        });
}

#[test]
fn saga_test_fires_a_deadline_on_request() {
    SagaTest::new(Moves::default())
        .given("purse-ada", [PurseEvent::PurseOpened { cents: 5_000 }])
        .given("move-big", [asked("ada", "bob", 2_000)])
        .when_deadline("big", "expire")
        .then(|outcome| {
            assert_eq!(
                outcome.events_of::<Purse>("ada"),
                [PurseEvent::GivenBack {
                    cents: 2_000,
                    transfer: "big".into()
                }]
            );
            let big = outcome.instance("big");
            assert_eq!(big.state.ended.as_deref(), Some("expired"));
            assert!(big.finished && big.deadlines.is_empty());
        });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_state_loads_from_a_snapshot_like_any_aggregate() -> TestResult {
    use annals_core::store::Snapshot;
    use annals_core::{Payload, SnapshotPolicy, SnapshotStore, Timestamp};
    use annals_projections::saga::Instance;
    let store = InMemoryStore::new();
    open(&store, &[("ada", 500), ("bob", 0)]).await?;
    let running = Projections::new(store.clone())
        .saga(Moves::default())
        .start()?;
    ask(
        &store,
        "m1",
        asked("ada", "bob", 200),
        &CommandContext::new(),
    )
    .await;
    running.wait_settled().await?;
    running.stop().await;
    let replayed = Repository::<Instance<Moves>, _>::new(store.clone())?
        .load("m1")
        .await?;
    assert!(replayed.replayed > 0);
    store
        .save_snapshot(Snapshot {
            stream_id: annals_core::StreamId::new("moves-m1")?,
            version: replayed.version,
            state_version: <Instance<Moves> as Aggregate>::STATE_VERSION,
            state: Payload::encode(&replayed.state)?,
            taken_at: Timestamp::now(),
        })
        .await?;
    let snapshotted = Repository::<Instance<Moves>, _>::new(store.clone())?
        .with_snapshots(SnapshotPolicy::every(100))
        .load("m1")
        .await?;
    assert_eq!(
        snapshotted.replayed, 0,
        "nothing replayed after the snapshot"
    );
    assert_eq!(snapshotted.state.state, replayed.state.state);
    assert_eq!(snapshotted.state.finished, replayed.state.finished);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_reaction_in_a_batch_keeps_the_reactions_before_it_and_nothing_after() -> TestResult
{
    let store = InMemoryStore::new();
    open(&store, &[("ada", 500), ("bob", 0)]).await?;
    let first = ask(
        &store,
        "m1",
        asked("ada", "bob", 10),
        &CommandContext::new(),
    )
    .await;
    let second = ask(
        &store,
        "m2",
        asked("ada", "bob", 20),
        &CommandContext::new(),
    )
    .await;
    let poison = ask(
        &store,
        "m3",
        asked("ada", "bob", 13),
        &CommandContext::new(),
    )
    .await;
    ask(
        &store,
        "m4",
        asked("ada", "bob", 40),
        &CommandContext::new(),
    )
    .await;
    // One batch holds all four requests: the first two commit together.
    let running = Projections::new(store.clone())
        .saga(Moves::default())
        .start()?;
    let error = running.wait_for("moves", poison).await.expect_err("fails");
    assert!(error.to_string().contains("thirteen"), "{error}");
    let taken: Vec<String> = all_events(&store)
        .await
        .iter()
        .filter(|e| e.event_type.as_str() == "Taken")
        .map(|e| e.payload.as_str().to_owned())
        .collect();
    assert_eq!(taken.len(), 2, "m1 and m2 only: {taken:?}");
    assert!(first < second);
    let tracking = store.load_checkpoint("moves").await?.expect("tracked");
    assert_eq!(tracking.position, Position(poison.0 - 1));
    running.stop().await;
    Ok(())
}

/// Takes from the source on each request, and never sets deadlines.
struct Takes;

#[annals_projections::async_trait]
impl Saga for Takes {
    type Events = MoveInput;
    type State = MoveState;
    const NAME: &'static str = "takes";
    const DEADLINES: bool = false;

    fn instance(&self, event: &Envelope<MoveInput>) -> Option<String> {
        matches!(event.event, MoveInput::Move(_)).then(|| event.stream_id.id().to_owned())
    }

    async fn react(
        &self,
        reaction: &mut Reaction<Self>,
        input: Input<'_, MoveInput>,
    ) -> Result<(), HandlerError> {
        let Input::Event(envelope) = input else {
            return Ok(());
        };
        if let MoveInput::Move(MoveEvent::MoveAsked { from, cents, .. }) = &envelope.event {
            if *cents >= 1_000 {
                // Not allowed: this saga declares no deadlines.
                reaction.schedule("expire", Duration::from_secs(60));
            }
            let id = reaction.instance().to_owned();
            reaction
                .execute::<Purse>(from, PurseCommand::Take(*cents, id))
                .await?;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saga_without_deadlines_keeps_no_index_and_refuses_to_schedule_one() -> TestResult {
    let store = InMemoryStore::new();
    open(&store, &[("ada", 5_000)]).await?;
    let running = Projections::new(store.clone()).saga(Takes).start()?;
    let names: Vec<&str> = running.status().iter().map(|s| s.name).collect();
    assert_eq!(names, ["takes"], "no deadline index");
    ask(
        &store,
        "m1",
        asked("ada", "bob", 100),
        &CommandContext::new(),
    )
    .await;
    running.wait_settled().await?;
    assert_eq!(cents(&store, "ada").await, 4_900);
    let big = ask(
        &store,
        "m2",
        asked("ada", "bob", 2_000),
        &CommandContext::new(),
    )
    .await;
    let error = running.wait_for("takes", big).await.expect_err("fails");
    assert!(error.to_string().contains("declares none"), "{error}");
    assert_eq!(
        cents(&store, "ada").await,
        4_900,
        "nothing of the failed reaction"
    );
    running.stop().await;
    Ok(())
}
