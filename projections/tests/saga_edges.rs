//! Deadlines and grouped reactions at their edges: a postponed deadline
//! never fires at its old time, and a group of reactions too large for one
//! append falls back to one reaction at a time instead of failing an
//! event that did nothing wrong. Each scenario runs on the in-memory
//! store and, when `ANNALS_PG_URL` names a server, on PostgreSQL.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use annals_core::{
    CheckpointStore, DomainEvent, EventSet, EventStore, EventStoreExt, ExpectedVersion,
    InMemoryStore, Limits, NewEvent, StreamId, Timestamp,
};
use annals_projections::saga::{Input, ManualClock, Reaction, Saga, SagaState};
use annals_projections::{Envelope, HandlerError, Projections};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
enum PingEvent {
    Start,
    Postpone,
    Noise,
}

#[derive(Debug, EventSet)]
enum PingInput {
    #[events(category = "ping")]
    Ping(PingEvent),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
enum PState {
    Noted,
}

/// The pinger keeps no state of its own.
#[derive(Debug, Default, Clone)]
struct S;

impl SagaState for S {
    type Event = PState;
    fn apply(&mut self, _: &PState) {}
}

struct Pinger {
    fired: Arc<AtomicU32>,
}

#[annals_projections::async_trait]
impl Saga for Pinger {
    type Events = PingInput;
    type State = S;
    const NAME: &'static str = "pinger";
    fn instance(&self, e: &Envelope<PingInput>) -> Option<String> {
        Some(e.stream_id.id().to_owned())
    }
    async fn react(
        &self,
        r: &mut Reaction<Self>,
        input: Input<'_, PingInput>,
    ) -> Result<(), HandlerError> {
        match input {
            Input::Deadline(d) => {
                let due_now: Vec<_> = r.deadlines().map(|(n, t)| (n.to_owned(), t)).collect();
                eprintln!(
                    "FIRED {:?} at {:?}; instance's deadlines before firing: {:?}",
                    d,
                    r.now(),
                    due_now
                );
                self.fired.fetch_add(1, Ordering::SeqCst);
            }
            Input::Event(e) => match e.event {
                PingInput::Ping(PingEvent::Start) => r.schedule("t", Duration::from_secs(60)),
                PingInput::Ping(PingEvent::Postpone) => r.schedule("t", Duration::from_secs(600)),
                PingInput::Ping(PingEvent::Noise) => r.record(PState::Noted),
            },
            _ => {}
        }
        Ok(())
    }
}

#[path = "common/postgres.rs"]
mod postgres;

use postgres::TestResult;

/// What the scenarios need of a store.
trait Store: EventStore + CheckpointStore + Clone + 'static {}

impl<S: EventStore + CheckpointStore + Clone + 'static> Store for S {}

async fn put(store: &impl EventStore, id: &str, e: PingEvent) -> TestResult {
    let s = StreamId::new(format!("ping-{id}"))?;
    let event = NewEvent::from_domain(&e, Default::default())?;
    store
        .append_to_stream(&s, ExpectedVersion::Any, vec![event])
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postponed_deadline_does_not_fire_at_its_old_time_after_restart() -> TestResult {
    postponed_deadline_does_not_fire_at_its_old_time_after_restart_on(InMemoryStore::new()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postponed_deadline_does_not_fire_at_its_old_time_after_restart_on_postgres() -> TestResult
{
    postgres::with_store(
        "postponed_deadline_does_not_fire_at_its_old_time_after_restart_on_postgres",
        postponed_deadline_does_not_fire_at_its_old_time_after_restart_on,
    )
    .await
}

/// The index replays the log from the start after a restart: the first
/// setting of a deadline, long due, must not fire it when a later setting
/// moved it.
async fn postponed_deadline_does_not_fire_at_its_old_time_after_restart_on<S: Store>(
    store: S,
) -> TestResult {
    let clock = ManualClock::starting_at(Timestamp::from_unix_micros(1_000_000_000_000));
    let fired = Arc::new(AtomicU32::new(0));
    let running = Projections::new(store.clone())
        .clock(clock.clone())
        .saga(Pinger {
            fired: fired.clone(),
        })
        .start()?;
    put(&store, "a", PingEvent::Start).await?;
    running.wait_settled().await?;
    for i in 0..2000 {
        put(&store, &format!("n{i}"), PingEvent::Noise).await?;
    }
    put(&store, "a", PingEvent::Postpone).await?; // due moves from +60s to +600s
    running.wait_settled().await?;
    running.stop().await;
    assert_eq!(fired.load(Ordering::SeqCst), 0);

    clock.advance(Duration::from_secs(120)); // past the old due, well before the new one
    let running = Projections::new(store.clone())
        .clock(clock.clone())
        .batch_size(1)
        .saga(Pinger {
            fired: fired.clone(),
        })
        .start()?;
    running.wait_settled_within(Duration::from_secs(20)).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    running.stop().await;
    let page = annals_core::EventStore::read_all(
        &store,
        annals_core::ReadAll::after(annals_core::Position::START).limit(10000),
    )
    .await?;
    for e in page
        .events
        .iter()
        .filter(|e| e.stream_id.as_str() == "pinger-a")
    {
        eprintln!(
            "{} {} {}",
            e.position.0,
            e.stream_id.as_str(),
            e.event_type.as_str()
        );
    }
    eprintln!("head {:?}", page.read_through);
    assert_eq!(
        fired.load(Ordering::SeqCst),
        0,
        "the postponed deadline fired 480s early"
    );
    Ok(())
}

/// Ten events per append: fewer than the twenty reactions.
fn append_limit() -> Limits {
    Limits::default().max_events_per_append(10)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouped_reactions_over_the_append_limit_fall_back_to_one_at_a_time() -> TestResult {
    grouped_reactions_over_the_append_limit_fall_back_to_one_at_a_time_on(
        InMemoryStore::with_limits(append_limit()),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouped_reactions_over_the_append_limit_fall_back_to_one_at_a_time_on_postgres(
) -> TestResult {
    postgres::with_options(
        "grouped_reactions_over_the_append_limit_fall_back_to_one_at_a_time_on_postgres",
        |options| options.limits(append_limit()),
        grouped_reactions_over_the_append_limit_fall_back_to_one_at_a_time_on,
    )
    .await
}

/// Twenty reactions that each fit one append do not fit one together.
async fn grouped_reactions_over_the_append_limit_fall_back_to_one_at_a_time_on<S: Store>(
    store: S,
) -> TestResult {
    for i in 0..20 {
        put(&store, &format!("n{i}"), PingEvent::Noise).await?;
    }
    let running = Projections::new(store.clone())
        .saga(Pinger {
            fired: Arc::new(AtomicU32::new(0)),
        })
        .start()?;
    // Each reaction appends one event: alone, every one fits the limit.
    let settled = running.wait_settled_within(Duration::from_secs(10)).await;
    eprintln!("settled: {settled:?}");
    running.stop().await;
    settled?;
    Ok(())
}
