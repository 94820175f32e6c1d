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
//! reader would move past it and never know. Every store guarantees it for
//! what it acknowledged; with relaxed durability, a power loss can take back
//! the last acknowledged commits, and their positions are then given to new
//! events (see the backend's durability docs).

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::append::{AppendError, AppendOutcome, AppendRequest};
use crate::error::StoreClosed;
use crate::event::{Position, RecordedEvent};
use crate::id::StreamId;
use crate::read::{Page, ReadAll, ReadError, ReadStream, ReplayEvent};

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
/// 11. A page of the global log says how far the store looked
///     ([`Page::read_through`]): every matching event after the read's start
///     and up to `read_through` is in the page, none beyond; a page with
///     fewer events than its limit was read through the head as it was when
///     the read began.
/// 12. Filters of the global log combine as [`crate::LogFilter`] says:
///     categories and prefixes widen, event types narrow, and stream ids
///     compare byte for byte.
/// 13. An append that tracks a checkpoint ([`AppendRequest::track`])
///     commits its events and sets the named checkpoint — to exactly the
///     [`Checkpoint`](crate::Checkpoint) given, as
///     [`CheckpointStore::load_checkpoint`](crate::CheckpointStore::load_checkpoint)
///     then returns it — together or not at all; the name's skipped events
///     are untouched. It is refused with [`AppendError::AlreadyTracked`],
///     and writes nothing, if the name's stored checkpoint is already at or
///     past the requested position, unless it is a retry of an append
///     already committed, which returns the original result (as in 5). It
///     is refused for every reason an untracked append is (3 to 6), and
///     then the checkpoint does not move; a name that breaks the naming
///     rules is refused with [`AppendError::InvalidCheckpointName`] before
///     anything is written. Of concurrent appends tracking one name at one
///     position, exactly one succeeds. An append without tracking leaves
///     every checkpoint as it is.
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
    /// as [`crate::upcast::UpcastingStore`]) stays correct without overriding it.
    async fn read_stream_for_replay(
        &self,
        stream: &StreamId,
        read: ReadStream,
    ) -> Result<Vec<ReplayEvent>, ReadError> {
        let page = self.read_stream(stream, read).await?;
        Ok(page.into_iter().map(ReplayEvent::from).collect())
    }

    /// Reads a page of the global log.
    async fn read_all(&self, read: ReadAll) -> Result<Page, ReadError>;

    /// The position of the newest committed event ([`Position::START`] when
    /// the log is empty).
    async fn head(&self) -> Result<Position, ReadError>;

    /// A watch on the head position, to wait for new events without polling.
    fn watch_head(&self) -> HeadWatch;
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

    /// Waits until the head passes `position` and returns the new head;
    /// returns at once if it already has. Fails once the store is closed.
    ///
    /// Cancel-safe: dropping the wait (in a `select!` against a stop
    /// signal, say) loses nothing, and the watch can wait again.
    pub async fn wait_past(&mut self, position: Position) -> Result<Position, StoreClosed> {
        let head = self
            .receiver
            .wait_for(|head| *head > position)
            .await
            .map_err(|_| StoreClosed)?;
        Ok(*head)
    }
}

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
    async fn read_all(&self, read: ReadAll) -> Result<Page, ReadError> {
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
}
