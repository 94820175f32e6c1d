//! Testing a projection: given these events, then the model looks like
//! this. Runs on the in-memory store from a plain `#[test]`: the test kit
//! brings its own runtime.

use std::path::PathBuf;

use annals_core::upcast::Upcasters;
use annals_core::{
    DomainEvent, EventSet, EventStore, ExpectedVersion, InMemoryStore, Metadata, NewEvent,
    Position, StreamId,
};

use crate::error::run_failure;
use crate::error::ProjectionFailure;
use crate::error::RunError;
use crate::projection::{Projection, SqliteProjection};
use crate::read_model::BatchError;
use crate::runner::source::{Batch, Source};
use crate::saga::{Instance, Saga};
use crate::sqlite::ReadModel;

/// Events to start from, each group appended to its stream in one append.
#[derive(Default)]
struct Given {
    appends: Vec<(StreamId, Vec<NewEvent>)>,
}

impl Given {
    fn add<E: DomainEvent>(&mut self, stream: &str, events: Vec<(E, Metadata)>) {
        // A test kit reports a broken test at once, with what is wrong.
        let stream = StreamId::new(stream)
            .unwrap_or_else(|e| panic!("given: stream id {stream:?} is invalid: {e}"));
        let events = events
            .iter()
            .map(|(event, metadata)| {
                NewEvent::from_domain(event, metadata.clone())
                    .unwrap_or_else(|e| panic!("given: an event does not encode: {e}"))
            })
            .collect();
        self.appends.push((stream, events));
    }

    async fn store(self) -> InMemoryStore {
        let store = InMemoryStore::new();
        for (stream, events) in self.appends {
            store
                .append(annals_core::AppendRequest::to_stream(
                    stream,
                    ExpectedVersion::Any,
                    events,
                ))
                .await
                .unwrap_or_else(|e| panic!("given: the append was refused: {e}"));
        }
        store
    }
}

/// The `given` methods every test of the kit has: events appended before
/// the projection or saga runs, each call one append.
macro_rules! given_methods {
    () => {
        /// Appends `events` to `stream` (one append), before the test runs.
        pub fn given<E: DomainEvent>(
            mut self,
            stream: &str,
            events: impl IntoIterator<Item = E>,
        ) -> Self {
            let events = events
                .into_iter()
                .map(|e| (e, Metadata::default()))
                .collect();
            self.given.add(stream, events);
            self
        }

        /// Appends one event with its metadata to `stream`, before the test
        /// runs.
        pub fn given_with<E: DomainEvent>(
            mut self,
            stream: &str,
            event: E,
            metadata: Metadata,
        ) -> Self {
            self.given.add(stream, vec![(event, metadata)]);
            self
        }
    };
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("the test kit could not start a runtime: {e}"))
}

fn source<E: EventSet>(store: InMemoryStore, name: &'static str) -> Source<InMemoryStore, E> {
    let upcasters = E::upcasters(Upcasters::builder())
        .build()
        .unwrap_or_else(|e| panic!("the event set's upcasters are invalid: {e}"));
    Source::new(
        store,
        name,
        upcasters,
        crate::projection::UnknownEvents::Fail,
        100,
    )
}

/// Tests a projection: given these events, then it looks like this.
///
/// A projection that is at least once ([`Projection`]) is run over the
/// events, and the check gets it:
///
/// ```
/// use std::collections::HashMap;
/// use annals_core::testkit::bank::AccountEvent;
/// use annals_projections::testing::ProjectionTest;
/// use annals_projections::{Envelope, HandlerError, Projection};
///
/// #[derive(Default)]
/// struct Activity(HashMap<String, u64>);
///
/// #[async_trait::async_trait]
/// impl Projection for Activity {
///     type Events = AccountEvent;
///     const NAME: &'static str = "activity";
///     async fn handle(&mut self, event: &Envelope<AccountEvent>) -> Result<(), HandlerError> {
///         *self.0.entry(event.stream_id.id().to_owned()).or_default() += 1;
///         Ok(())
///     }
///     async fn reset(&mut self) -> Result<(), HandlerError> {
///         self.0.clear();
///         Ok(())
///     }
/// }
///
/// ProjectionTest::new(Activity::default())
///     .given("account-1", [AccountEvent::Opened { owner: "ada".into() }, AccountEvent::Deposited { amount: 5 }])
///     .given("account-2", [AccountEvent::Opened { owner: "bob".into() }])
///     .then(|activity| assert_eq!(activity.0["1"], 2));
/// ```
pub struct ProjectionTest<P> {
    projection: P,
    given: Given,
}

impl<P> ProjectionTest<P> {
    /// A test of `projection`, with no events yet.
    pub fn new(projection: P) -> Self {
        ProjectionTest {
            projection,
            given: Given::default(),
        }
    }

    given_methods!();
}

impl<P: Projection> ProjectionTest<P> {
    /// Runs the projection over the given events; returns it, or the
    /// failure it stopped at.
    pub async fn run(mut self) -> Result<P, ProjectionFailure> {
        let store = self.given.store().await;
        let source = source::<P::Events>(store, P::NAME);
        let mut after = Position::START;
        loop {
            let batch: Batch<P::Events> = source.next(after).await.map_err(run_failure)?;
            for event in &batch.events {
                self.projection
                    .handle(event)
                    .await
                    .map_err(|error| ProjectionFailure::Event {
                        projection: P::NAME,
                        position: event.position,
                        event_id: event.event_id,
                        event_type: event.event_type.clone(),
                        error: error.to_string(),
                    })?;
            }
            self.projection.flush().await.map_err(|error| {
                let source = annals_core::BackendError::new(
                    annals_core::BackendErrorKind::Other,
                    error.to_string(),
                );
                run_failure(RunError::backend(P::NAME, "flushing", source))
            })?;
            if let Some(bad) = batch.undecodable {
                return Err(bad.into_failure(P::NAME));
            }
            after = batch.read_through;
            if !batch.full {
                return Ok(self.projection);
            }
        }
    }

    /// Runs the projection over the given events and calls `check` with
    /// it. Panics if the projection fails. Call it from a plain `#[test]`;
    /// async code uses [`ProjectionTest::run`].
    pub fn then(self, check: impl FnOnce(&P)) {
        match runtime().block_on(self.run()) {
            Ok(projection) => check(&projection),
            Err(failure) => panic!("the projection failed: {failure}"),
        }
    }
}

/// An SQLite read model ([`SqliteProjection`]) is tested the same way: the
/// model is built in a temporary file, and the check reads it with a
/// connection.
///
/// ```
/// use annals_core::testkit::bank::AccountEvent;
/// use annals_projections::testing::ProjectionTest;
/// use annals_projections::{Envelope, HandlerError, SqliteProjection};
/// use rusqlite::Transaction;
///
/// struct Count;
///
/// impl SqliteProjection for Count {
///     type Events = AccountEvent;
///     const NAME: &'static str = "count";
///     fn create(&self, db: &Transaction<'_>) -> Result<(), HandlerError> {
///         db.execute_batch("CREATE TABLE events (n INTEGER NOT NULL); INSERT INTO events VALUES (0)")?;
///         Ok(())
///     }
///     fn handle(&mut self, db: &Transaction<'_>, _: &Envelope<AccountEvent>) -> Result<(), HandlerError> {
///         db.execute("UPDATE events SET n = n + 1", [])?;
///         Ok(())
///     }
/// }
///
/// ProjectionTest::new(Count)
///     .given("account-1", [AccountEvent::Opened { owner: "ada".into() }, AccountEvent::Deposited { amount: 5 }])
///     .then_read_model(|db| {
///         let n: i64 = db.query_row("SELECT n FROM events", [], |r| r.get(0)).unwrap();
///         assert_eq!(n, 2);
///     });
/// ```
impl<P: SqliteProjection> ProjectionTest<P> {
    /// Builds the model over the given events in a temporary file, then
    /// calls `check` with a connection to it. Panics if the projection
    /// fails. Call it from a plain `#[test]`.
    pub fn then_read_model(self, check: impl FnOnce(&rusqlite::Connection)) {
        let file = TempFile::new(P::NAME);
        let built = runtime().block_on(build(self.projection, self.given, &file.0));
        if let Err(failure) = built {
            panic!("the projection failed: {failure}");
        }
        let conn = rusqlite::Connection::open(&file.0)
            .unwrap_or_else(|e| panic!("the read model does not open: {e}"));
        check(&conn);
    }
}

async fn build<P: SqliteProjection>(
    projection: P,
    given: Given,
    path: &std::path::Path,
) -> Result<(), ProjectionFailure> {
    let store = given.store().await;
    let source = source::<P::Events>(store, P::NAME);
    let backend = |doing, source| run_failure(RunError::backend(P::NAME, doing, source));
    let (mut model, mut checkpoint) =
        ReadModel::open(projection, path).map_err(|e| backend("opening the read model", e))?;
    loop {
        let batch = source
            .next(checkpoint.position)
            .await
            .map_err(run_failure)?;
        let next = source
            .checkpoint_at(batch.read_through, batch.through_id, P::VERSION)
            .await
            .map_err(run_failure)?;
        match model.apply(&batch.events, next, None) {
            Ok(()) => checkpoint = next,
            Err(BatchError::Handler { index, error }) => {
                let event = &batch.events[index];
                return Err(ProjectionFailure::Event {
                    projection: P::NAME,
                    position: event.position,
                    event_id: event.event_id,
                    event_type: event.event_type.clone(),
                    error,
                });
            }
            Err(BatchError::Backend(e)) => return Err(backend("applying a batch", e)),
        }
        if let Some(bad) = batch.undecodable {
            return Err(bad.into_failure(P::NAME));
        }
        if !batch.full {
            return Ok(());
        }
    }
}

/// A database file removed (with its WAL) when the test ends.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str) -> Self {
        TempFile(std::env::temp_dir().join(format!(
            "annals-projection-test-{name}-{}.db",
            uuid::Uuid::now_v7()
        )))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut name = self.0.as_os_str().to_owned();
            name.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(name));
        }
    }
}

/// Tests a saga: given these events (the saga reacts to them as it would
/// live), when this event or this deadline, then these commands were
/// decided, this compensation, this state, these deadlines.
///
/// It runs the saga under the real runner on the in-memory store, with a
/// [`ManualClock`](crate::saga::ManualClock) that only a deadline moves.
/// Call [`then`](SagaTest::then) from a plain `#[test]`.
pub struct SagaTest<G> {
    saga: G,
    given: Given,
    when: Option<When>,
}

enum When {
    Event(StreamId, NewEvent),
    Deadline { instance: String, name: String },
}

/// What the reaction to the `when` of a [`SagaTest`] did, and the
/// reactions that followed from it.
#[non_exhaustive]
pub struct SagaOutcome<G: Saga> {
    /// The events it appended to aggregates' streams: the commands it
    /// decided, compensation included, in commit order.
    pub decided: Vec<annals_core::RecordedEvent>,
    /// The events it recorded in instances' streams: state, deadlines,
    /// the end.
    pub recorded: Vec<annals_core::RecordedEvent>,
    /// The instances it touched, as their streams now make them, by id.
    pub instances: std::collections::BTreeMap<String, Instance<G>>,
}

impl<G: Saga> std::fmt::Debug for Instance<G>
where
    G::State: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("state", &self.state)
            .field("deadlines", &self.deadlines)
            .field("finished", &self.finished)
            .finish()
    }
}

impl<G: Saga> SagaOutcome<G> {
    /// The events decided on aggregate `A`'s instance `id`, decoded.
    pub fn events_of<A: annals_core::Aggregate>(&self, id: &str) -> Vec<A::Event> {
        self.decided
            .iter()
            .filter(|e| e.stream_id.category() == A::CATEGORY && e.stream_id.id() == id)
            .map(|e| {
                e.decode::<A::Event>()
                    .unwrap_or_else(|err| panic!("a decided event does not decode: {err}"))
            })
            .collect()
    }

    /// The instance `id` after the reaction.
    pub fn instance(&self, id: &str) -> &Instance<G> {
        self.instances
            .get(id)
            .unwrap_or_else(|| panic!("the reaction did not touch instance {id:?}"))
    }
}

impl<G: Saga> SagaTest<G> {
    /// A test of `saga`, with no events yet.
    pub fn new(saga: G) -> Self {
        SagaTest {
            saga,
            given: Given::default(),
            when: None,
        }
    }

    given_methods!();

    /// The event whose reaction is checked.
    pub fn when<E: DomainEvent>(mut self, stream: &str, event: E) -> Self {
        let stream = StreamId::new(stream)
            .unwrap_or_else(|e| panic!("when: stream id {stream:?} is invalid: {e}"));
        let event = NewEvent::from_domain(&event, Metadata::default())
            .unwrap_or_else(|e| panic!("when: the event does not encode: {e}"));
        self.when = Some(When::Event(stream, event));
        self
    }

    /// The deadline whose reaction is checked: instance `instance`'s
    /// deadline `name`, set by a reaction to the given events. The test's
    /// clock moves to when it is due.
    pub fn when_deadline(mut self, instance: &str, name: &str) -> Self {
        self.when = Some(When::Deadline {
            instance: instance.to_owned(),
            name: name.to_owned(),
        });
        self
    }

    /// Runs the given events, then the `when`, and returns what its
    /// reaction did.
    pub async fn run(self) -> Result<SagaOutcome<G>, crate::WaitError> {
        use annals_core::{EventStore, Repository};
        let store = self.given.store().await;
        let clock = crate::saga::ManualClock::default();
        let running = crate::Projections::new(store.clone())
            .clock(clock.clone())
            .saga(self.saga)
            .start()
            .unwrap_or_else(|e| panic!("the saga does not start: {e}"));
        running.wait_settled().await?;
        let instances = Repository::<Instance<G>, _>::new(store.clone())
            .unwrap_or_else(|e| panic!("the saga's instances are not aggregates: {e}"));
        let before = store
            .head()
            .await
            .unwrap_or_else(|e| panic!("the store failed: {e}"));
        let mut skip = None;
        match self.when {
            Some(When::Event(stream, event)) => {
                let appended = store
                    .append(annals_core::AppendRequest::to_stream(
                        stream,
                        ExpectedVersion::Any,
                        vec![event],
                    ))
                    .await
                    .unwrap_or_else(|e| panic!("when: the append was refused: {e}"));
                skip = appended.last_position();
            }
            Some(When::Deadline { instance, name }) => {
                let loaded = instances.load(&instance).await.unwrap_or_else(|e| {
                    panic!("when_deadline: instance {instance:?} does not load: {e}")
                });
                let due = loaded
                    .state
                    .deadlines
                    .get(&name)
                    .copied()
                    .unwrap_or_else(|| {
                        panic!(
                            "when_deadline: instance {instance:?} has no pending deadline {name:?}"
                        )
                    });
                let wait = due.as_unix_micros() - crate::saga::Clock::now(&clock).as_unix_micros();
                clock.advance(std::time::Duration::from_micros(
                    u64::try_from(wait).unwrap_or(0),
                ));
            }
            None => {}
        }
        running.wait_settled().await?;
        running.stop().await;
        let mut decided = Vec::new();
        let mut recorded = Vec::new();
        let mut after = before;
        loop {
            let page = store
                .read_all(annals_core::ReadAll::after(after))
                .await
                .unwrap_or_else(|e| panic!("the store failed: {e}"));
            for event in page.events {
                if Some(event.position) == skip {
                    continue;
                }
                if event.stream_id.category() == G::NAME {
                    recorded.push(event);
                } else {
                    decided.push(event);
                }
            }
            if page.read_through <= after {
                break;
            }
            after = page.read_through;
        }
        let ids: std::collections::BTreeSet<String> = recorded
            .iter()
            .map(|e| e.stream_id.id().to_owned())
            .collect();
        let mut touched = std::collections::BTreeMap::new();
        for id in ids {
            let instance = instances
                .load(&id)
                .await
                .unwrap_or_else(|e| panic!("instance {id:?} does not load: {e}"))
                .state;
            touched.insert(id, instance);
        }
        Ok(SagaOutcome {
            decided,
            recorded,
            instances: touched,
        })
    }

    /// Runs the test and calls `check` with what the `when`'s reaction
    /// did. Panics if the saga fails.
    pub fn then(self, check: impl FnOnce(&SagaOutcome<G>)) {
        match runtime().block_on(self.run()) {
            Ok(outcome) => check(&outcome),
            Err(failure) => panic!("the saga failed: {failure}"),
        }
    }
}
