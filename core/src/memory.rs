//! A store that keeps everything in memory, for tests and examples.
//!
//! It keeps every guarantee of the store contract (it runs the whole
//! conformance suite): one mutex makes each append atomic and gives
//! gap-free positions in commit order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::sync::watch;

use crate::append::{AppendOutcome, AppendRequest, Limits, Replay};
use crate::error::{AppendError, BackendError, ReadError};
use crate::event::{EventId, Position, RecordedEvent, Timestamp};
use crate::id::StreamId;
use crate::snapshot::{Snapshot, SnapshotError, SnapshotStore};
use crate::store::{Direction, EventStore, HeadWatch, ReadAll, ReadStream};

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
                crate::error::BackendErrorKind::Corrupt,
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
}

#[async_trait]
impl EventStore for InMemoryStore {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, AppendError> {
        request.check(&self.shared.limits)?;
        let mut log = self.log()?;
        let stored = request
            .events()
            .map(|e| log.ids.get(&e.event_id()).map(|&i| log.events[i].clone()))
            .collect();
        if let Replay::Committed(original) = request.replay_of(stored)? {
            return Ok(original);
        }
        // Check every stream before writing anything: all or nothing.
        let mut next_versions = Vec::with_capacity(request.streams().len());
        for s in request.streams() {
            let current = log.version_of(&s.stream);
            s.expected.check(&s.stream, current)?;
            let len = u64::try_from(s.events.len()).ok();
            let last = len.and_then(|n| current.unwrap_or(0).checked_add(n));
            if last.is_none() {
                return Err(AppendError::VersionOverflow {
                    stream: s.stream.clone(),
                });
            }
            next_versions.push(current.unwrap_or(0) + 1);
        }
        let recorded_at = Timestamp::now();
        let mut recorded = Vec::with_capacity(request.event_count());
        for (s, first_version) in request.into_streams().into_iter().zip(next_versions) {
            for (event, version) in s.events.into_iter().zip(first_version..) {
                let index = log.events.len();
                let position = Position(index as u64 + 1);
                let event = event.into_recorded(s.stream.clone(), version, position, recorded_at);
                log.ids.insert(event.event_id, index);
                log.streams.entry(s.stream.clone()).or_default().push(index);
                log.events.push(event.clone());
                recorded.push(event);
            }
        }
        // Published while the lock is held, so the head never moves backwards.
        self.shared
            .head
            .send_replace(Position(log.events.len() as u64));
        drop(log);
        Ok(AppendOutcome::new(recorded))
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

    async fn read_all(&self, read: ReadAll) -> Result<Vec<RecordedEvent>, ReadError> {
        let log = self.log()?;
        let start = usize::try_from(read.start().0).unwrap_or(usize::MAX);
        Ok(log
            .events
            .iter()
            .skip(start)
            .filter(|e| read.matches(e))
            .take(read.max_count())
            .cloned()
            .collect())
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
