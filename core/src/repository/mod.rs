//! The repository: load an aggregate, run a command, append what it decided.
//!
//! Optimistic concurrency in one sentence: the repository appends with
//! `Exact(version it decided on)`, so if anyone else appended in between,
//! the store refuses, and the command is decided again on fresh state
//! (when the [`RetryPolicy`] allows) instead of on stale state.
//!
//! # The command path
//!
//! A command on an aggregate the repository has seen recently decides on
//! the state in its cache and reads nothing: one append is the whole cost.
//! A cached state can be stale (another process or repository appended);
//! the append then meets a conflict, the entry is dropped, and the command
//! is decided again on a fresh load — once, whatever the retry policy,
//! since the caller never saw the stale state. A refusal, or a decision to
//! append nothing, reveals no staleness, so one made on cached state is
//! made again on a fresh load before it is returned: every answer a caller
//! gets was decided on the stream as it is in the store. The policy counts
//! only conflicts met on fresh state.
//!
//! Measured with `annals-bench command-seq` (medians of 5, relaxed
//! durability, 1,000 aggregates): the cache lets one command at a time run
//! 1.6× as fast as loading every aggregate (0.94× against 0.59× raw
//! SQLite's rate).

mod cache;
mod context;
mod error;
mod load;
mod unit;

use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::aggregate::Aggregate;
use crate::append::{AppendError, ExpectedVersion};
use crate::contract::EventStore;
use crate::event::{NewEvent, Position, RecordedEvent, Timestamp};
use crate::ext::EventStoreExt;
use crate::id::{InvalidName, StreamId};
use crate::payload::{Payload, PayloadError};
use crate::snapshot::{Snapshot, SnapshotDue, SnapshotPolicy, SnapshotStore};

pub use cache::CacheSize;
pub use context::{CommandContext, RetryPolicy};
pub use error::{AggregateError, CommandError, LoadError};
pub use unit::{Done, Unit, UnitOfWork};

use cache::{AggregateCache, Entry};
use load::Replayer;

/// An aggregate as loaded from its stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded<A> {
    /// The state after every stored event.
    pub state: A,
    /// The stream's version (0 when the stream has no events).
    pub version: u64,
    /// How many events were replayed (fewer than `version` when a snapshot
    /// was used).
    pub replayed: u64,
}

/// What a command did.
#[derive(Debug, Clone, PartialEq)]
pub struct Executed<A> {
    /// The state after the command's events.
    pub state: A,
    /// The stream's version after the command.
    pub version: u64,
    /// The events recorded, in order (none if the command decided nothing).
    pub events: Vec<RecordedEvent>,
}

impl<A> Executed<A> {
    /// The position of the command's last event in the global log
    /// ([`Position::START`] if it recorded none): wait for a projection to
    /// reach it to read the command's own writes.
    pub fn position(&self) -> Position {
        self.events.last().map_or(Position::START, |e| e.position)
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
/// let accounts = Repository::<Account, _>::new(InMemoryStore::new())?
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
    replayer: Replayer,
    cache: AggregateCache<A>,
    aggregate: PhantomData<fn() -> A>,
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
            replayer: self.replayer,
            cache: self.cache.clone(),
            aggregate: PhantomData,
        }
    }
}

impl<A: Aggregate, S: EventStore> Repository<A, S> {
    /// A repository on `store`, returning conflicts to the caller, with an
    /// aggregate cache of the default size ([`CacheSize::default`]).
    ///
    /// Fails, before any command, when the aggregate's category is invalid
    /// or its event type's upcasters do not form valid chains (a gap, a
    /// duplicate step, a cycle). Loads bring old stored events up to date
    /// with those upcasters.
    pub fn new(store: S) -> Result<Self, AggregateError> {
        Ok(Repository {
            store,
            retry: RetryPolicy::never(),
            snapshots: None,
            replayer: Replayer::of::<A>()?,
            cache: AggregateCache::new(CacheSize::default()),
            aggregate: PhantomData,
        })
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

    /// Sets what happens when an append meets a conflict on fresh state.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets how many aggregates the cache keeps ([`CacheSize::none`] to
    /// load every aggregate for every command).
    pub fn with_cache(mut self, size: CacheSize) -> Self {
        self.cache = AggregateCache::new(size);
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// How many aggregates the cache holds now.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// The stream of the aggregate instance `id`: `{CATEGORY}-{id}`.
    pub fn stream_id(&self, id: &str) -> Result<StreamId, InvalidName> {
        StreamId::from_parts(A::CATEGORY, id)
    }

    /// Rebuilds an aggregate from the store: its snapshot, if any, and the
    /// events after it, read a page at a time. Always reads the store (the
    /// cache serves commands, not queries), and refreshes the cache.
    pub async fn load(&self, id: &str) -> Result<Loaded<A>, LoadError> {
        let stream = self.stream_id(id)?;
        let loaded = self.load_stream(&stream).await?;
        self.keep(&stream, entry_of(loaded.clone()));
        Ok(loaded)
    }

    async fn load_stream(&self, stream: &StreamId) -> Result<Loaded<A>, LoadError> {
        let (mut state, from) = self.start(stream).await;
        let version = self
            .replayer
            .replay(&self.store, stream, &mut state, from)
            .await?;
        Ok(Loaded {
            state,
            version,
            replayed: version - from,
        })
    }

    /// The aggregate's state to decide on: from the cache when it holds
    /// the stream and `cached` allows, else loaded. Says which it was.
    async fn state_for(
        &self,
        stream: &StreamId,
        cached: bool,
    ) -> Result<(Entry<A>, bool), LoadError> {
        if cached {
            if let Some(entry) = self.cache.get(stream) {
                return Ok((entry, true));
            }
        }
        let loaded = self.load_stream(stream).await?;
        Ok((entry_of(loaded), false))
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

    /// Writes a snapshot in the background when the policy says it is due;
    /// says whether it did.
    fn snapshot_if_due(
        &self,
        stream: &StreamId,
        state: &A,
        version: u64,
        last_snapshot: u64,
    ) -> bool {
        let Some(snapshots) = &self.snapshots else {
            return false;
        };
        if !snapshots.policy.is_due(SnapshotDue {
            version,
            last_snapshot,
        }) {
            return false;
        }
        let state = match (snapshots.encode)(state) {
            Ok(state) => state,
            Err(e) => {
                tracing::warn!(stream = %stream, error = %e, "state cannot be snapshotted");
                return false;
            }
        };
        let snapshot = Snapshot {
            stream_id: stream.clone(),
            version,
            state_version: A::STATE_VERSION,
            state,
            taken_at: Timestamp::now(),
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
                true
            }
            Err(_) => {
                tracing::debug!(stream = %stream, "no runtime to write a snapshot on");
                false
            }
        }
    }

    /// Keeps a state that matches the store: snapshotted if due, and cached.
    fn keep(&self, stream: &StreamId, mut entry: Entry<A>) -> Entry<A> {
        if self.snapshot_if_due(stream, &entry.state, entry.version, entry.last_snapshot) {
            entry.last_snapshot = entry.version;
        }
        self.cache.put(stream, entry.clone());
        entry
    }

    /// A command's result, its state kept.
    fn executed(
        &self,
        stream: &StreamId,
        entry: Entry<A>,
        events: Vec<RecordedEvent>,
    ) -> Executed<A> {
        let entry = self.keep(stream, entry);
        Executed {
            state: entry.state,
            version: entry.version,
            events,
        }
    }

    /// Lets the aggregate handle `command` and appends the events it
    /// decided on with `Exact(the version it decided on)`.
    ///
    /// The state comes from the cache when the repository holds it, else
    /// from the store. A conflict on cached state drops the entry and
    /// decides again on a fresh load; a conflict on fresh state is returned,
    /// or decided again as often as the retry policy allows.
    pub async fn execute(
        &self,
        id: &str,
        command: A::Command,
        ctx: &CommandContext,
    ) -> Result<Executed<A>, CommandError<A::Error>> {
        let stream = self.stream_id(id).map_err(LoadError::from)?;
        let mut retries_left = self.retry.max_retries();
        let mut use_cache = true;
        loop {
            let (mut entry, from_cache) = self.state_for(&stream, use_cache).await?;
            let decided = entry.state.handle(command.clone());
            // Only an append can reveal that cached state is stale; a
            // refusal or a decision to do nothing appends nothing, so one
            // made on cached state is made again on fresh state first.
            let appends = matches!(&decided, Ok(events) if !events.is_empty());
            if from_cache && !appends {
                self.cache.remove(&stream);
                use_cache = false;
                continue;
            }
            let decided = match decided {
                Ok(decided) => decided,
                Err(error) => {
                    self.cache.put(&stream, entry);
                    return Err(CommandError::Refused { stream, error });
                }
            };
            if decided.is_empty() {
                return Ok(self.executed(&stream, entry, Vec::new()));
            }
            let new_events = decided
                .iter()
                .map(|event| NewEvent::from_domain(event, ctx.metadata().clone()))
                .collect::<Result<Vec<_>, _>>()?;
            let expected = ExpectedVersion::Exact(entry.version);
            match self
                .store
                .append_to_stream(&stream, expected, new_events)
                .await
            {
                Ok(outcome) => {
                    for event in &decided {
                        entry.state.apply(event);
                    }
                    entry.version = outcome.stream_version(&stream).unwrap_or(entry.version);
                    return Ok(self.executed(&stream, entry, outcome.into_events()));
                }
                Err(AppendError::Conflict { .. }) if from_cache => {
                    // The cached state was stale: the caller never saw it,
                    // so deciding again is not a retry of theirs.
                    self.cache.remove(&stream);
                    use_cache = false;
                    tracing::debug!(stream = %stream, "cached state was stale; deciding again");
                }
                Err(AppendError::Conflict { .. }) if retries_left > 0 => {
                    retries_left -= 1;
                    self.cache.remove(&stream);
                    use_cache = false;
                    tracing::debug!(stream = %stream, "append met a conflict; deciding again");
                }
                Err(e) => {
                    self.cache.remove(&stream);
                    return Err(e.into());
                }
            }
        }
    }
}

/// The cache entry for a state as loaded: its snapshot, if one was used,
/// is the newest known.
fn entry_of<A>(loaded: Loaded<A>) -> Entry<A> {
    Entry {
        last_snapshot: loaded.version - loaded.replayed,
        state: loaded.state,
        version: loaded.version,
    }
}
