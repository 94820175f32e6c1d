//! The repository: load an aggregate, run a command, append what it decided.
//!
//! Optimistic concurrency in one sentence: the repository appends with
//! `Exact(version it loaded)`, so if anyone else appended in between, the
//! store refuses, and the command is decided again on fresh state (when the
//! [`RetryPolicy`] allows) instead of on stale state.

use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

use crate::aggregate::Aggregate;
use crate::append::ExpectedVersion;
use crate::domain::{DomainEvent, EncodeError};
use crate::error::{AppendError, DecodeError, ReadError};
use crate::event::{Metadata, NewEvent, Position, RecordedEvent};
use crate::id::{InvalidName, StreamId};
use crate::payload::{Payload, PayloadError};
use crate::snapshot::{Snapshot, SnapshotDue, SnapshotPolicy, SnapshotStore};
use crate::store::{EventStore, EventStoreExt, ReadStream, ReplayEvent, MAX_READ_LIMIT};
use crate::upcast::{RegistryError, Upcasters};

/// Whether a command is decided again when its append meets a conflict.
///
/// Default: never; the conflict is returned to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetryPolicy {
    max_retries: u32,
}

impl RetryPolicy {
    /// Return conflicts to the caller.
    pub fn never() -> Self {
        RetryPolicy { max_retries: 0 }
    }

    /// On a conflict, reload and decide again, up to `max_retries` times.
    pub fn on_conflict(max_retries: u32) -> Self {
        RetryPolicy { max_retries }
    }

    /// How many times a conflicting command is retried.
    pub fn max_retries(&self) -> u32 {
        self.max_retries
    }
}

/// The metadata a command passes on to every event it produces.
///
/// ```
/// use annals_core::CommandContext;
/// let ctx = CommandContext::new()
///     .correlation_id(uuid::Uuid::now_v7())
///     .tenant("acme")
///     .field("user", "ada");
/// assert_eq!(ctx.metadata().tenant.as_deref(), Some("acme"));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommandContext {
    metadata: Metadata,
}

impl CommandContext {
    /// No correlation, causation, tenant or fields.
    pub fn new() -> Self {
        CommandContext::default()
    }

    /// A context for a command issued in reaction to `event` (a saga's
    /// command): its causation id is the event's id, and it keeps the
    /// event's correlation id (or starts one from the event id) and tenant.
    pub fn caused_by(event: &RecordedEvent) -> Self {
        let cause = *event.event_id.as_uuid();
        CommandContext {
            metadata: Metadata {
                correlation_id: Some(event.metadata.correlation_id.unwrap_or(cause)),
                causation_id: Some(cause),
                tenant: event.metadata.tenant.clone(),
                fields: serde_json::Map::new(),
            },
        }
    }

    /// Sets the correlation id.
    pub fn correlation_id(mut self, id: Uuid) -> Self {
        self.metadata.correlation_id = Some(id);
        self
    }

    /// Sets the causation id.
    pub fn causation_id(mut self, id: Uuid) -> Self {
        self.metadata.causation_id = Some(id);
        self
    }

    /// Sets the tenant.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.metadata.tenant = Some(tenant.into());
        self
    }

    /// Adds a user-defined field.
    pub fn field(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.metadata.fields.insert(key.into(), value.into());
        self
    }

    /// The metadata every event of the command gets.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }
}

/// An aggregate as loaded from its stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded<A> {
    /// The state after every stored event.
    pub state: A,
    /// The stream's version: the number of events applied (0 for a new stream).
    pub version: u64,
    /// How many events were replayed: all of them, or those after the
    /// snapshot the load started from.
    pub replayed: u64,
}

/// The result of a command that was handled and stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Executed<A> {
    /// The state after the new events.
    pub state: A,
    /// The stream's version after the new events.
    pub version: u64,
    /// What was recorded (empty when the command decided nothing should happen).
    pub events: Vec<RecordedEvent>,
}

/// Why an aggregate could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The aggregate id does not make a valid stream id.
    #[error(transparent)]
    InvalidId(#[from] InvalidName),
    /// The store could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The event type's upcasters do not form a valid registry: fix them.
    #[error("the upcasters of the event type are invalid: {0}")]
    Upcasters(RegistryError),
    /// A stored event does not decode into the aggregate's event type: fix the
    /// data or add an upcaster. Nothing is skipped.
    #[error("stream {stream} version {version} (position {position}): {source}")]
    Decode {
        /// The stream.
        stream: StreamId,
        /// The event's version in the stream.
        version: u64,
        /// The event's position in the log.
        position: Position,
        /// What did not decode.
        source: DecodeError,
    },
}

/// Why a command failed. Nothing was stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError<E> {
    /// The aggregate refused the command: tell the user.
    #[error("command refused: {0}")]
    Domain(E),
    /// The aggregate could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// An event the aggregate produced cannot be stored.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The store refused the append; a [`AppendError::Conflict`] here means
    /// the retry policy was used up.
    #[error(transparent)]
    Append(#[from] AppendError),
}

impl<E> CommandError<E> {
    /// Whether the command lost a race with another writer.
    pub fn is_conflict(&self) -> bool {
        matches!(self, CommandError::Append(AppendError::Conflict { .. }))
    }
}

/// Loads aggregates and runs commands against a store.
///
/// ```
/// use annals_core::testkit::bank::{Account, AccountCommand};
/// use annals_core::{CommandContext, InMemoryStore, Repository, RetryPolicy};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let accounts = Repository::<Account, _>::new(InMemoryStore::new())
///     .with_retry(RetryPolicy::on_conflict(3));
/// let done = accounts
///     .execute("7", AccountCommand::Open { owner: "grace".into() }, &CommandContext::new())
///     .await?;
/// assert_eq!(done.version, 1);
/// # Ok(()) }
/// ```
pub struct Repository<A, S> {
    store: S,
    retry: RetryPolicy,
    snapshots: Option<Arc<Snapshots<A>>>,
    upcasting: Upcasting,
    aggregate: PhantomData<fn() -> A>,
}

/// How a repository brings old stored events up to date.
#[derive(Clone)]
enum Upcasting {
    /// The event type declares no upcasters: events are read as stored.
    None,
    /// The checked registry of the event type's upcasters.
    Registry(Upcasters),
    /// The event type's upcasters do not form a valid registry; every load
    /// reports why.
    Broken(RegistryError),
}

impl Upcasting {
    fn of<E: DomainEvent>() -> Self {
        if E::upcasters().is_empty() {
            return Upcasting::None;
        }
        match Upcasters::for_events::<E>() {
            Ok(registry) => Upcasting::Registry(registry),
            Err(error) => Upcasting::Broken(error),
        }
    }
}

/// How a repository keeps snapshots of its aggregates.
struct Snapshots<A> {
    store: Arc<dyn SnapshotStore>,
    policy: SnapshotPolicy,
    encode: fn(&A) -> Result<Payload, PayloadError>,
    decode: fn(&Payload) -> Result<A, serde_json::Error>,
}

impl<A, S: Clone> Clone for Repository<A, S> {
    fn clone(&self) -> Self {
        Repository {
            store: self.store.clone(),
            retry: self.retry,
            snapshots: self.snapshots.clone(),
            upcasting: self.upcasting.clone(),
            aggregate: PhantomData,
        }
    }
}

impl<A: Aggregate, S: EventStore> Repository<A, S> {
    /// A repository on `store`, returning conflicts to the caller.
    ///
    /// Loads bring old stored events up to date with the upcasters the
    /// event type declares ([`DomainEvent::upcasters`], the derive's
    /// `#[event(upcasters = ...)]`). If they do not form a valid registry,
    /// every load fails with [`LoadError::Upcasters`]; use
    /// [`Repository::try_new`] to find out at start-up instead.
    pub fn new(store: S) -> Self {
        let upcasting = Upcasting::of::<A::Event>();
        if let Upcasting::Broken(error) = &upcasting {
            tracing::error!(category = A::CATEGORY, %error, "the event type's upcasters are invalid");
        }
        Repository::with_upcasting(store, upcasting)
    }

    fn with_upcasting(store: S, upcasting: Upcasting) -> Self {
        Repository {
            store,
            retry: RetryPolicy::never(),
            snapshots: None,
            upcasting,
            aggregate: PhantomData,
        }
    }

    /// A repository on `store` whose event type's upcasters are checked now:
    /// a gap, a duplicate step or a cycle in them is an error at start-up.
    ///
    /// ```
    /// use annals_core::testkit::bank::Account;
    /// use annals_core::{InMemoryStore, Repository};
    /// let accounts = Repository::<Account, _>::try_new(InMemoryStore::new())?;
    /// # let _ = accounts;
    /// # Ok::<(), annals_core::RegistryError>(())
    /// ```
    pub fn try_new(store: S) -> Result<Self, RegistryError> {
        match Upcasting::of::<A::Event>() {
            Upcasting::Broken(error) => Err(error),
            upcasting => Ok(Repository::with_upcasting(store, upcasting)),
        }
    }

    /// Keeps snapshots in the store by `policy`, and starts loads from them.
    ///
    /// Snapshots are written in the background after a command or a load
    /// that makes one due; a failed write is logged and changes nothing for
    /// the command. A snapshot of another [`Aggregate::STATE_VERSION`], or one
    /// that does not decode, is ignored and replaced.
    pub fn with_snapshots(mut self, policy: SnapshotPolicy) -> Self
    where
        S: SnapshotStore + Clone + 'static,
        A: Serialize + DeserializeOwned,
    {
        self.snapshots = Some(Arc::new(Snapshots {
            store: Arc::new(self.store.clone()),
            policy,
            encode: |state| Payload::encode(state),
            decode: |payload| serde_json::from_str(payload.as_str()),
        }));
        self
    }

    /// Sets what happens when an append meets a conflict.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The stream of the aggregate instance `id`: `{CATEGORY}-{id}`.
    pub fn stream_id(&self, id: &str) -> Result<StreamId, InvalidName> {
        StreamId::from_parts(A::CATEGORY, id)
    }

    /// Rebuilds an aggregate from its snapshot, if any, and the events after
    /// it, read a page at a time.
    pub async fn load(&self, id: &str) -> Result<Loaded<A>, LoadError> {
        let stream = self.stream_id(id)?;
        let loaded = self.load_stream(&stream).await?;
        self.snapshot_if_due(
            &stream,
            &loaded.state,
            loaded.version,
            loaded.version - loaded.replayed,
        );
        Ok(loaded)
    }

    async fn load_stream(&self, stream: &StreamId) -> Result<Loaded<A>, LoadError> {
        let (mut state, from) = self.start(stream).await;
        let mut version = from;
        loop {
            let read = ReadStream::forward().from_version(version + 1);
            let (page, full, last) = self.read_page(stream, read).await?;
            for stored in &page {
                let event = decode(stream, stored)?;
                state.apply(&event);
            }
            version = last.unwrap_or(version);
            if !full {
                return Ok(Loaded {
                    state,
                    version,
                    replayed: version - from,
                });
            }
        }
    }

    /// One page of a stream, brought up to date: the events, whether the
    /// page was full (more may follow), and the last stored version read.
    async fn read_page(
        &self,
        stream: &StreamId,
        read: ReadStream,
    ) -> Result<(Vec<ReplayEvent>, bool, Option<u64>), LoadError> {
        match &self.upcasting {
            Upcasting::None => {
                let page = self.store.read_stream_for_replay(stream, read).await?;
                let (full, last) = (page_is_full(page.len()), page.last().map(|e| e.version));
                Ok((page, full, last))
            }
            Upcasting::Registry(upcasters) => {
                // Upcasters see the whole stored event (metadata included),
                // so this path reads whole events.
                let page = self.store.read_stream(stream, read).await?;
                let (full, last) = (page_is_full(page.len()), page.last().map(|e| e.version));
                let page = upcasters.upcast_page(page)?;
                Ok((
                    page.into_iter().map(ReplayEvent::from).collect(),
                    full,
                    last,
                ))
            }
            Upcasting::Broken(error) => Err(LoadError::Upcasters(error.clone())),
        }
    }

    /// The state to replay from: a usable snapshot, or the default state.
    async fn start(&self, stream: &StreamId) -> (A, u64) {
        let Some(snapshots) = &self.snapshots else {
            return (A::default(), 0);
        };
        match snapshots.store.load_snapshot(stream).await {
            Ok(Some(snapshot)) if snapshot.state_version == A::STATE_VERSION => {
                match (snapshots.decode)(&snapshot.state) {
                    Ok(state) => return (state, snapshot.version),
                    Err(e) => tracing::warn!(
                        stream = %stream,
                        error = %crate::payload::redacted_message(&e),
                        "snapshot does not decode; replaying the stream"
                    ),
                }
            }
            Ok(Some(snapshot)) => tracing::debug!(
                stream = %stream,
                stored = snapshot.state_version,
                current = A::STATE_VERSION,
                "snapshot of another state version; replaying the stream"
            ),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(stream = %stream, error = %e, "snapshot unreadable; replaying the stream")
            }
        }
        (A::default(), 0)
    }

    /// Writes a snapshot in the background when the policy says it is due.
    fn snapshot_if_due(&self, stream: &StreamId, state: &A, version: u64, last_snapshot: u64) {
        let Some(snapshots) = &self.snapshots else {
            return;
        };
        if !snapshots.policy.is_due(SnapshotDue {
            version,
            last_snapshot,
        }) {
            return;
        }
        let state = match (snapshots.encode)(state) {
            Ok(state) => state,
            Err(e) => {
                tracing::warn!(stream = %stream, error = %e, "state cannot be snapshotted");
                return;
            }
        };
        let snapshot = Snapshot {
            stream_id: stream.clone(),
            version,
            state_version: A::STATE_VERSION,
            state,
            taken_at: crate::event::Timestamp::now(),
        };
        let store = snapshots.store.clone();
        let write = async move {
            let stream = snapshot.stream_id.clone();
            if let Err(e) = store.save_snapshot(snapshot).await {
                tracing::warn!(stream = %stream, error = %e, "snapshot not saved");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(write);
            }
            Err(_) => tracing::debug!(stream = %stream, "no runtime to write a snapshot on"),
        }
    }

    /// Loads the aggregate, lets it handle `command`, and appends the events
    /// it decided on with `Exact(loaded version)`. On a conflict the command
    /// is decided again on fresh state, as often as the retry policy allows.
    pub async fn execute(
        &self,
        id: &str,
        command: A::Command,
        ctx: &CommandContext,
    ) -> Result<Executed<A>, CommandError<A::Error>>
    where
        A::Command: Clone,
    {
        let stream = self.stream_id(id).map_err(LoadError::from)?;
        let mut retries_left = self.retry.max_retries;
        loop {
            let Loaded {
                mut state,
                version,
                replayed,
            } = self.load_stream(&stream).await?;
            let last_snapshot = version - replayed;
            let decided = state
                .handle(command.clone())
                .map_err(CommandError::Domain)?;
            if decided.is_empty() {
                self.snapshot_if_due(&stream, &state, version, last_snapshot);
                return Ok(Executed {
                    state,
                    version,
                    events: Vec::new(),
                });
            }
            let new_events = decided
                .iter()
                .map(|event| NewEvent::from_domain(event, ctx.metadata().clone()))
                .collect::<Result<Vec<_>, _>>()?;
            let expected = ExpectedVersion::Exact(version);
            match self
                .store
                .append_to_stream(&stream, expected, new_events)
                .await
            {
                Ok(outcome) => {
                    for event in &decided {
                        state.apply(event);
                    }
                    let version = outcome.stream_version(&stream).unwrap_or(version);
                    self.snapshot_if_due(&stream, &state, version, last_snapshot);
                    return Ok(Executed {
                        state,
                        version,
                        events: outcome.into_events(),
                    });
                }
                Err(AppendError::Conflict { .. }) if retries_left > 0 => {
                    retries_left -= 1;
                    tracing::debug!(stream = %stream, "append met a conflict; deciding again");
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

fn page_is_full(len: usize) -> bool {
    len == MAX_READ_LIMIT
}

/// Decodes one stored event into the aggregate's event type.
fn decode<E: DomainEvent>(stream: &StreamId, stored: &ReplayEvent) -> Result<E, LoadError> {
    E::decode(
        stored.event_type.as_str(),
        stored.schema_version,
        &stored.payload,
    )
    .map_err(|source| LoadError::Decode {
        stream: stream.clone(),
        version: stored.version,
        position: stored.position,
        source,
    })
}
