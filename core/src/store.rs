//! The store contract: an append-only log of streams with optimistic
//! concurrency, and one global order across all streams.
//!
//! # Why object-safe
//!
//! [`EventStore`] is an `async_trait` so that `Arc<dyn EventStore>` works:
//! an application picks its backend from configuration at start-up and the
//! rest of the code (repositories, projections) stays the same. The cost, one
//! boxed future per call, is noise beside a database round trip.
//!
//! # What "no skipped events" means for a reader
//!
//! A reader that follows the global log remembers the last position it
//! handled and asks for what comes after. That is only safe if an event can
//! never commit *below* a position a reader has already seen: otherwise the
//! reader would move past it and never know. Every store guarantees it.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::append::{AppendOutcome, AppendRequest, ExpectedVersion};
use crate::error::{AppendError, ReadError, StoreClosed};
use crate::event::{NewEvent, Position, RecordedEvent};
use crate::id::{EventType, StreamId};
use crate::payload::Payload;

/// The most events one read returns; larger limits are lowered to this.
pub const MAX_READ_LIMIT: usize = 10_000;

/// An append-only event store.
///
/// The contract, which the conformance suite in `testkit::conformance`
/// checks case by case on every backend:
///
/// 1. Versions start at 1 and have no gaps within a stream.
/// 2. Positions are unique and strictly increasing in commit order; gap-free
///    on the embedded and in-memory stores.
/// 3. An append whose expected version does not match fails with
///    [`AppendError::Conflict`] carrying the expected and actual versions,
///    and writes nothing.
/// 4. All events of one append, across all its streams, commit together or
///    not at all.
/// 5. Re-sending an append whose event ids are all stored returns the
///    original result and writes nothing; a partial overlap, or an id stored
///    with other content or in another place, is an error.
/// 6. Bad input (empty appends, duplicate ids or streams, limits) is refused
///    with a typed error before anything is written.
/// 7. Reads return stored events exactly as appended (payload bytes,
///    metadata), with `recorded_at` set by the store.
/// 8. A reader of the global log never skips a committed event: once it has
///    seen position p, no event later commits below p.
/// 9. Concurrent appends to one stream with the same expected version: exactly
///    one succeeds, every other fails with a conflict.
/// 10. The head watch wakes waiters after every commit.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Appends events to one or more streams, atomically.
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, AppendError>;

    /// Reads a page of one stream's events.
    async fn read_stream(
        &self,
        stream: &StreamId,
        read: ReadStream,
    ) -> Result<Vec<RecordedEvent>, ReadError>;

    /// Reads a page of one stream's events with only what replaying them
    /// into an aggregate needs (see [`ReplayEvent`]): the hot path of every
    /// command, which a backend may serve with a leaner query.
    ///
    /// The default reads whole events with [`EventStore::read_stream`] and
    /// keeps those parts, so a wrapper that changes events on the way (such
    /// as [`crate::UpcastingStore`]) stays correct without overriding it.
    async fn read_stream_for_replay(
        &self,
        stream: &StreamId,
        read: ReadStream,
    ) -> Result<Vec<ReplayEvent>, ReadError> {
        let page = self.read_stream(stream, read).await?;
        Ok(page.into_iter().map(ReplayEvent::from).collect())
    }

    /// Reads a page of the global log.
    async fn read_all(&self, read: ReadAll) -> Result<Vec<RecordedEvent>, ReadError>;

    /// The position of the newest committed event ([`Position::START`] when
    /// the log is empty).
    async fn head(&self) -> Result<Position, ReadError>;

    /// A watch on the head position, to wait for new events without polling.
    fn watch_head(&self) -> HeadWatch;
}

/// The parts of a stored event that rebuilding an aggregate needs: where
/// it is, its version, and what to decode. Read with
/// [`EventStore::read_stream_for_replay`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ReplayEvent {
    /// Its place in the global log.
    pub position: Position,
    /// Its version in the stream.
    pub version: u64,
    /// Its stored type name.
    pub event_type: EventType,
    /// The schema version of its payload.
    pub schema_version: u32,
    /// The JSON payload, exactly as appended.
    pub payload: Payload,
}

impl ReplayEvent {
    /// Builds one from its stored parts; for store backends.
    pub fn from_parts(
        position: Position,
        version: u64,
        event_type: EventType,
        schema_version: u32,
        payload: Payload,
    ) -> Self {
        ReplayEvent {
            position,
            version,
            event_type,
            schema_version,
            payload,
        }
    }
}

impl From<RecordedEvent> for ReplayEvent {
    fn from(event: RecordedEvent) -> Self {
        ReplayEvent {
            position: event.position,
            version: event.version,
            event_type: event.event_type,
            schema_version: event.schema_version,
            payload: event.payload,
        }
    }
}

/// Which way a stream read goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Direction {
    /// Oldest first.
    Forward,
    /// Newest first.
    Backward,
}

/// A page of a stream to read.
///
/// ```
/// use annals_core::ReadStream;
/// let newest_ten = ReadStream::backward().limit(10);
/// let from_five = ReadStream::forward().from_version(5);
/// # let _ = (newest_ten, from_five);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadStream {
    direction: Direction,
    from: Option<u64>,
    limit: usize,
}

impl ReadStream {
    /// From the first event, oldest first.
    pub fn forward() -> Self {
        ReadStream {
            direction: Direction::Forward,
            from: None,
            limit: MAX_READ_LIMIT,
        }
    }

    /// From the last event, newest first.
    pub fn backward() -> Self {
        ReadStream {
            direction: Direction::Backward,
            from: None,
            limit: MAX_READ_LIMIT,
        }
    }

    /// Starts at this version (included).
    pub fn from_version(mut self, version: u64) -> Self {
        self.from = Some(version);
        self
    }

    /// Returns at most this many events (at most [`MAX_READ_LIMIT`]).
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit.min(MAX_READ_LIMIT);
        self
    }

    /// The direction.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// The first version to read, if set.
    pub fn start(&self) -> Option<u64> {
        self.from
    }

    /// The most events to return.
    pub fn max_count(&self) -> usize {
        self.limit
    }

    /// Whether a stored version falls in this read's range (ignoring the limit).
    pub fn includes(&self, version: u64) -> bool {
        match (self.direction, self.from) {
            (_, None) => true,
            (Direction::Forward, Some(from)) => version >= from,
            (Direction::Backward, Some(from)) => version <= from,
        }
    }
}

/// Which streams a global read includes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamFilter {
    /// Every stream.
    All,
    /// Streams of one category: `account` matches `account-1`, not `accounts-1`.
    Category(String),
    /// Streams whose id starts with this text, byte for byte.
    Prefix(String),
}

impl StreamFilter {
    /// Whether a stream id passes.
    pub fn matches(&self, stream: &StreamId) -> bool {
        match self {
            StreamFilter::All => true,
            StreamFilter::Category(c) => stream.category() == c,
            StreamFilter::Prefix(p) => stream.as_str().starts_with(p.as_str()),
        }
    }
}

/// A page of the global log to read: events after a position, optionally
/// filtered by stream and event type.
///
/// ```
/// use annals_core::{Position, ReadAll};
/// let page = ReadAll::after(Position::START).category("account").limit(500);
/// # let _ = page;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadAll {
    after: Position,
    limit: usize,
    streams: StreamFilter,
    event_types: Option<Vec<EventType>>,
}

impl ReadAll {
    /// Events after this position (not included); [`Position::START`] for all.
    pub fn after(position: Position) -> Self {
        ReadAll {
            after: position,
            limit: MAX_READ_LIMIT,
            streams: StreamFilter::All,
            event_types: None,
        }
    }

    /// Returns at most this many events (at most [`MAX_READ_LIMIT`]).
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit.min(MAX_READ_LIMIT);
        self
    }

    /// The same read, starting after another position: the next page.
    pub fn after_position(mut self, position: Position) -> Self {
        self.after = position;
        self
    }

    /// Only streams of this category.
    pub fn category(mut self, category: impl Into<String>) -> Self {
        self.streams = StreamFilter::Category(category.into());
        self
    }

    /// Only streams whose id starts with this prefix.
    pub fn stream_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.streams = StreamFilter::Prefix(prefix.into());
        self
    }

    /// Only events of these types.
    pub fn event_types(mut self, types: impl IntoIterator<Item = EventType>) -> Self {
        self.event_types = Some(types.into_iter().collect());
        self
    }

    /// The position after which to read.
    pub fn start(&self) -> Position {
        self.after
    }

    /// The most events to return.
    pub fn max_count(&self) -> usize {
        self.limit
    }

    /// The stream filter.
    pub fn stream_filter(&self) -> &StreamFilter {
        &self.streams
    }

    /// The event type filter, if any.
    pub fn event_type_filter(&self) -> Option<&[EventType]> {
        self.event_types.as_deref()
    }

    /// Whether an event passes the filters (ignoring position and limit).
    pub fn matches(&self, event: &RecordedEvent) -> bool {
        self.streams.matches(&event.stream_id)
            && self
                .event_types
                .as_ref()
                .is_none_or(|types| types.contains(&event.event_type))
    }
}

/// Waits for the head of the log to move.
///
/// ```
/// # async fn demo(store: impl annals_core::EventStore) -> Result<(), annals_core::StoreClosed> {
/// let mut head = store.watch_head();
/// let seen = head.current();
/// let newer = head.wait_past(seen).await?; // returns once an append commits
/// assert!(newer > seen);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct HeadWatch {
    receiver: watch::Receiver<Position>,
}

impl HeadWatch {
    /// Makes a sender for a store to publish its head on, and a watch on it.
    pub fn channel(head: Position) -> (watch::Sender<Position>, HeadWatch) {
        let (sender, receiver) = watch::channel(head);
        (sender, HeadWatch { receiver })
    }

    /// Wraps a receiver of a store's head sender.
    pub fn new(receiver: watch::Receiver<Position>) -> Self {
        HeadWatch { receiver }
    }

    /// The head as last published.
    pub fn current(&self) -> Position {
        *self.receiver.borrow()
    }

    /// Waits until the head passes `position` and returns the new head.
    pub async fn wait_past(&mut self, position: Position) -> Result<Position, StoreClosed> {
        let head = self
            .receiver
            .wait_for(|head| *head > position)
            .await
            .map_err(|_| StoreClosed)?;
        Ok(*head)
    }
}

/// Conveniences every store gets for free.
#[async_trait]
pub trait EventStoreExt: EventStore {
    /// Appends events to one stream.
    async fn append_to_stream(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, AppendError> {
        self.append(AppendRequest::to_stream(stream.clone(), expected, events))
            .await
    }

    /// Reads a whole stream, oldest first, page by page.
    ///
    /// For streams that fit in memory; long streams are better read a page
    /// at a time with [`EventStore::read_stream`].
    async fn read_stream_to_end(&self, stream: &StreamId) -> Result<Vec<RecordedEvent>, ReadError> {
        let mut events: Vec<RecordedEvent> = Vec::new();
        loop {
            let from = events.last().map_or(1, |e| e.version + 1);
            let page = self
                .read_stream(stream, ReadStream::forward().from_version(from))
                .await?;
            let done = page.len() < MAX_READ_LIMIT;
            events.extend(page);
            if done {
                return Ok(events);
            }
        }
    }

    /// This store with every read going through `upcasters`.
    ///
    /// ```
    /// use annals_core::testkit::bank::AccountEvent;
    /// use annals_core::{EventStoreExt, InMemoryStore, Upcasters};
    /// let store = InMemoryStore::new().with_upcasters(Upcasters::for_events::<AccountEvent>()?);
    /// # let _ = store;
    /// # Ok::<(), annals_core::RegistryError>(())
    /// ```
    fn with_upcasters(
        self,
        upcasters: crate::upcast::Upcasters,
    ) -> crate::upcast::UpcastingStore<Self>
    where
        Self: Sized,
    {
        crate::upcast::UpcastingStore::new(self, upcasters)
    }

    /// The stream's current version, or `None` if it has no events.
    async fn stream_version(&self, stream: &StreamId) -> Result<Option<u64>, ReadError> {
        let last = self
            .read_stream(stream, ReadStream::backward().limit(1))
            .await?;
        Ok(last.first().map(|e| e.version))
    }
}

impl<S: EventStore + ?Sized> EventStoreExt for S {}

#[async_trait]
impl<S: EventStore + ?Sized> EventStore for Arc<S> {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, AppendError> {
        (**self).append(request).await
    }
    async fn read_stream(
        &self,
        stream: &StreamId,
        read: ReadStream,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        (**self).read_stream(stream, read).await
    }
    async fn read_stream_for_replay(
        &self,
        stream: &StreamId,
        read: ReadStream,
    ) -> Result<Vec<ReplayEvent>, ReadError> {
        (**self).read_stream_for_replay(stream, read).await
    }
    async fn read_all(&self, read: ReadAll) -> Result<Vec<RecordedEvent>, ReadError> {
        (**self).read_all(read).await
    }
    async fn head(&self) -> Result<Position, ReadError> {
        (**self).head().await
    }
    fn watch_head(&self) -> HeadWatch {
        (**self).watch_head()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keeps [`EventStore`] object-safe: this fails to compile otherwise.
    #[allow(dead_code)]
    fn event_store_is_object_safe(store: &dyn EventStore) -> HeadWatch {
        store.watch_head()
    }

    #[test]
    fn limits_are_capped() {
        assert_eq!(
            ReadStream::forward().limit(usize::MAX).max_count(),
            MAX_READ_LIMIT
        );
        assert_eq!(ReadAll::after(Position::START).limit(0).max_count(), 0);
    }

    #[test]
    fn category_filter_matches_whole_categories_only() -> Result<(), crate::InvalidName> {
        let f = StreamFilter::Category("account".into());
        assert!(f.matches(&StreamId::new("account-1")?));
        assert!(!f.matches(&StreamId::new("accounts-1")?));
        assert!(!f.matches(&StreamId::new("Account-1")?));
        let p = StreamFilter::Prefix("acc_".into());
        assert!(p.matches(&StreamId::new("acc_x-1")?));
        assert!(!p.matches(&StreamId::new("accx-1")?));
        Ok(())
    }
}
