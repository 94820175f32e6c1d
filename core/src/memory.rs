//! A store that keeps everything in memory, for tests and examples.
//!
//! It keeps every guarantee of the store contract (it runs the whole
//! conformance suite): one mutex makes each append atomic, with the
//! checkpoint it tracks, and gives gap-free positions in commit order.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::sync::watch;

use crate::append::{
    run_append, AppendError, AppendOutcome, AppendRequest, AppendTarget, Appended, Inserted,
    Limits, PlannedRow, Tracking,
};
use crate::checkpoint::{Checkpoint, CheckpointStore, SkippedEvent};
use crate::contract::{EventStore, HeadWatch};
use crate::error::{BackendError, BackendErrorKind};
use crate::event::{EventId, Position, RecordedEvent, Timestamp};
use crate::id::StreamId;
use crate::read::{Direction, Page, ReadAll, ReadError, ReadStream};
use crate::request_book::RequestBook;
use crate::requests::{
    Claim, Finish, HandlerRequest, HandlerStore, NewRequest, RequestCounts, RequestFilter,
    RequestId,
};
use crate::snapshot::{Snapshot, SnapshotError, SnapshotStore};

/// An in-memory event store. Clones share the same log.
///
/// ```
/// use annals_core::{EventStore, EventStoreExt, ExpectedVersion, InMemoryStore, NewEvent, Payload, StreamId};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = InMemoryStore::new();
/// let stream = StreamId::new("account-1")?;
/// let event = NewEvent::new("Opened", 1, Payload::from_json(r#"{"owner":"ada"}"#)?)?;
/// store.append_to_stream(&stream, ExpectedVersion::NoStream, vec![event]).await?;
/// assert_eq!(store.read_stream_to_end(&stream).await?.len(), 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct InMemoryStore {
    shared: Arc<Shared>,
}

struct Shared {
    log: Mutex<Log>,
    head: watch::Sender<Position>,
    limits: Limits,
}

#[derive(Default)]
struct Log {
    /// Every event; the event at index i has position i + 1.
    events: Vec<RecordedEvent>,
    /// Indices into `events`, per stream, in version order.
    streams: HashMap<StreamId, Vec<usize>>,
    /// Index into `events`, per event id.
    ids: HashMap<EventId, usize>,
    /// The newest snapshot per stream.
    snapshots: HashMap<StreamId, Snapshot>,
    /// Each follower's checkpoint and the events it skipped, by position.
    checkpoints: HashMap<String, Follower>,
    /// Durable handlers' requests.
    requests: RequestBook,
}

/// What the store keeps for one named follower of the log.
#[derive(Default)]
struct Follower {
    checkpoint: Option<Checkpoint>,
    skipped: BTreeMap<(Position, EventId), SkippedEvent>,
}

impl Default for InMemoryStore {
    fn default() -> Self {
        InMemoryStore::new()
    }
}

impl InMemoryStore {
    /// An empty store with the default [`Limits`].
    pub fn new() -> Self {
        InMemoryStore::with_limits(Limits::default())
    }

    /// An empty store with the given limits.
    pub fn with_limits(limits: Limits) -> Self {
        let (head, _) = watch::channel(Position::START);
        InMemoryStore {
            shared: Arc::new(Shared {
                log: Mutex::new(Log::default()),
                head,
                limits,
            }),
        }
    }

    fn log(&self) -> Result<MutexGuard<'_, Log>, BackendError> {
        // A poisoned lock means a panic happened while the log was changing;
        // appends push only after every check, so the log is still whole, but
        // say so rather than pretend.
        self.shared.log.lock().map_err(|_| {
            BackendError::new(
                BackendErrorKind::Corrupt,
                "the in-memory log lock is poisoned",
            )
        })
    }
}

impl Log {
    fn version_of(&self, stream: &StreamId) -> Option<u64> {
        self.streams
            .get(stream)
            .and_then(|indices| indices.last())
            .map(|&i| self.events[i].version)
    }

    fn head(&self) -> Position {
        Position(self.events.len() as u64)
    }
}

/// One append's view of the log: rows and the tracked checkpoint are
/// staged, and join the log only when the whole append is inserted.
struct Staging<'l> {
    log: &'l Log,
    /// How many rows this append has inserted so far.
    staged: usize,
    /// The checkpoint this append sets.
    checkpoint: Option<Tracking>,
}

impl AppendTarget for Staging<'_> {
    type Error = Infallible;

    fn current_version(&mut self, stream: &StreamId) -> Result<Option<u64>, Infallible> {
        Ok(self.log.version_of(stream))
    }

    fn insert(&mut self, row: &PlannedRow<'_>) -> Result<Inserted, Infallible> {
        let id = row.event.event_id();
        if self.log.ids.contains_key(&id) {
            return Ok(Inserted::IdTaken);
        }
        self.staged += 1;
        let position = self.log.events.len() + self.staged;
        Ok(Inserted::At(Position(position as u64)))
    }

    fn undo(&mut self) -> Result<(), Infallible> {
        self.staged = 0;
        self.checkpoint = None;
        Ok(())
    }

    fn find_event(&mut self, id: EventId) -> Result<Option<RecordedEvent>, Infallible> {
        Ok(self.log.ids.get(&id).map(|&i| self.log.events[i].clone()))
    }

    fn tracked_position(&mut self, name: &str) -> Result<Option<Position>, Infallible> {
        // Appends run one at a time under the lock: no other append's
        // checkpoint is staged meanwhile.
        Ok(self
            .log
            .checkpoints
            .get(name)
            .and_then(|follower| follower.checkpoint)
            .map(|checkpoint| checkpoint.position))
    }

    fn set_checkpoint(&mut self, tracking: &Tracking, _: Timestamp) -> Result<(), Infallible> {
        self.checkpoint = Some(tracking.clone());
        Ok(())
    }
}

#[async_trait]
impl EventStore for InMemoryStore {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, AppendError> {
        request.check(&self.shared.limits)?;
        let mut log = self.log()?;
        let mut staging = Staging {
            log: &log,
            staged: 0,
            checkpoint: None,
        };
        let appended = match run_append(&mut staging, &request, Timestamp::now()) {
            Ok(appended) => appended,
            Err(never) => match never {},
        };
        let Appended::Inserted(outcome) = appended else {
            return appended.into_result();
        };
        let checkpoint = staging.checkpoint;
        for event in outcome.events() {
            let index = log.events.len();
            log.ids.insert(event.event_id, index);
            log.streams
                .entry(event.stream_id.clone())
                .or_default()
                .push(index);
            log.events.push(event.clone());
        }
        if let Some(Tracking {
            name, checkpoint, ..
        }) = checkpoint
        {
            // The name's skipped events stay as they are.
            log.checkpoints.entry(name).or_default().checkpoint = Some(checkpoint);
        }
        // Published while the lock is held, so the head never moves backwards.
        self.shared.head.send_replace(log.head());
        drop(log);
        Ok(outcome)
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        read: ReadStream,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        let log = self.log()?;
        let Some(indices) = log.streams.get(stream) else {
            return Ok(Vec::new());
        };
        let pick = |&i: &usize| {
            let e = &log.events[i];
            read.includes(e.version).then(|| e.clone())
        };
        let page = match read.direction() {
            Direction::Forward => indices
                .iter()
                .filter_map(pick)
                .take(read.max_count())
                .collect(),
            _ => indices
                .iter()
                .rev()
                .filter_map(pick)
                .take(read.max_count())
                .collect(),
        };
        Ok(page)
    }

    async fn read_all(&self, read: ReadAll) -> Result<Page, ReadError> {
        let log = self.log()?;
        let start = usize::try_from(read.start().0).unwrap_or(usize::MAX);
        let limit = read.max_count();
        let mut events = Vec::new();
        let mut read_through = read.start().max(log.head());
        for event in log.events.iter().skip(start) {
            if events.len() == limit {
                // Full: the store looked as far as the last event it kept.
                read_through = events
                    .last()
                    .map_or(read.start(), |e: &RecordedEvent| e.position);
                break;
            }
            if read.matches(event) {
                events.push(event.clone());
            }
        }
        Ok(Page::new(events, read_through))
    }

    async fn head(&self) -> Result<Position, ReadError> {
        Ok(*self.shared.head.borrow())
    }

    fn watch_head(&self) -> HeadWatch {
        HeadWatch::new(self.shared.head.subscribe())
    }
}

#[async_trait]
impl SnapshotStore for InMemoryStore {
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), SnapshotError> {
        let mut log = self.log()?;
        let newer_stored = log
            .snapshots
            .get(&snapshot.stream_id)
            .is_some_and(|s| s.version > snapshot.version);
        if !newer_stored {
            log.snapshots.insert(snapshot.stream_id.clone(), snapshot);
        }
        Ok(())
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, SnapshotError> {
        Ok(self.log()?.snapshots.get(stream).cloned())
    }
}

#[async_trait]
impl CheckpointStore for InMemoryStore {
    async fn load_checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, BackendError> {
        Ok(self
            .log()?
            .checkpoints
            .get(name)
            .and_then(|follower| follower.checkpoint))
    }

    async fn save_checkpoint(
        &self,
        name: &str,
        checkpoint: Checkpoint,
        skipped: &[SkippedEvent],
    ) -> Result<(), BackendError> {
        let mut log = self.log()?;
        let follower = log.checkpoints.entry(name.to_owned()).or_default();
        // Forward only: a follower that lags behind another never moves it
        // back.
        if follower
            .checkpoint
            .is_none_or(|stored| stored.position <= checkpoint.position)
        {
            follower.checkpoint = Some(checkpoint);
        }
        for event in skipped {
            // The first record of an event stays, as on every store.
            follower
                .skipped
                .entry((event.position, event.event_id))
                .or_insert_with(|| event.clone());
        }
        Ok(())
    }

    async fn skipped_events(&self, name: &str) -> Result<Vec<SkippedEvent>, BackendError> {
        Ok(self
            .log()?
            .checkpoints
            .get(name)
            .map(|follower| follower.skipped.values().cloned().collect())
            .unwrap_or_default())
    }

    async fn reset_checkpoint(&self, name: &str) -> Result<(), BackendError> {
        self.log()?.checkpoints.remove(name);
        Ok(())
    }
}

#[async_trait]
impl HandlerStore for InMemoryStore {
    async fn enqueue_requests(
        &self,
        checkpoints: &[(String, Checkpoint)],
        requests: &[NewRequest],
        now: Timestamp,
    ) -> Result<(), BackendError> {
        let mut log = self.log()?;
        for (name, checkpoint) in checkpoints {
            let follower = log.checkpoints.entry(name.clone()).or_default();
            if follower
                .checkpoint
                .is_none_or(|stored| stored.position <= checkpoint.position)
            {
                follower.checkpoint = Some(*checkpoint);
            }
        }
        log.requests.enqueue(requests, now);
        Ok(())
    }

    async fn claim_requests(&self, claim: &Claim) -> Result<Vec<HandlerRequest>, BackendError> {
        Ok(self.log()?.requests.claim(claim))
    }

    async fn renew_claims(
        &self,
        owner: &str,
        ids: &[RequestId],
        until: Timestamp,
    ) -> Result<(), BackendError> {
        self.log()?.requests.renew(owner, ids, until);
        Ok(())
    }

    async fn finish_request(
        &self,
        id: RequestId,
        owner: &str,
        finish: Finish,
        now: Timestamp,
    ) -> Result<bool, BackendError> {
        Ok(self.log()?.requests.finish(id, owner, finish, now))
    }

    async fn list_requests(
        &self,
        filter: &RequestFilter,
        now: Timestamp,
    ) -> Result<Vec<HandlerRequest>, BackendError> {
        Ok(self.log()?.requests.list(filter, now))
    }

    async fn requeue_requests(
        &self,
        filter: &RequestFilter,
        now: Timestamp,
    ) -> Result<u64, BackendError> {
        Ok(self.log()?.requests.requeue(filter, now))
    }

    async fn discard_request(
        &self,
        id: RequestId,
        reason: &str,
        now: Timestamp,
    ) -> Result<bool, BackendError> {
        Ok(self.log()?.requests.discard(id, reason, now))
    }

    async fn request_counts(&self, now: Timestamp) -> Result<RequestCounts, BackendError> {
        Ok(self.log()?.requests.counts(now))
    }

    async fn unsettled_requests(&self) -> Result<u64, BackendError> {
        let counts = self.log()?.requests.counts(Timestamp::now());
        Ok(counts.pending + counts.running)
    }
}
