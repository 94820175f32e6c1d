//! Conveniences every store gets for free.

use std::pin::Pin;

use async_trait::async_trait;
use futures_core::Stream;

use crate::append::{AppendError, AppendOutcome, AppendRequest, ExpectedVersion};
use crate::contract::EventStore;
use crate::event::{NewEvent, Position, RecordedEvent};
use crate::id::StreamId;
use crate::read::{Page, ReadAll, ReadError, ReadStream, MAX_READ_LIMIT};
use crate::upcaster::registry::Upcasters;
use crate::upcasting::UpcastingStore;

/// Pages of the global log, as read by [`EventStoreExt::read_all_pages`].
pub type Pages<'s> = Pin<Box<dyn Stream<Item = Result<Page, ReadError>> + Send + 's>>;

/// Conveniences every store gets for free, built on [`EventStore`]'s
/// methods so that no store can get them subtly wrong.
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

    /// The stream's current version, or `None` if it has no events.
    async fn stream_version(&self, stream: &StreamId) -> Result<Option<u64>, ReadError> {
        let last = self
            .read_stream(stream, ReadStream::backward().limit(1))
            .await?;
        Ok(last.first().map(|e| e.version))
    }

    /// Every page of the global log from `read`'s start up to the head as
    /// it is when the first page is read, for readers that want everything
    /// committed so far. Pages with no matching event are left out; each
    /// page's [`Page::read_through`] is where the next one starts.
    ///
    /// ```
    /// use annals_core::{EventStoreExt, InMemoryStore, Position, ReadAll};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use futures_util::StreamExt;
    /// let store = InMemoryStore::new();
    /// let mut pages = store.read_all_pages(ReadAll::after(Position::START).category("account"));
    /// while let Some(page) = pages.next().await {
    ///     for event in page? {
    ///         // handle the event
    /// #       let _ = event;
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    fn read_all_pages(&self, read: ReadAll) -> Pages<'_>
    where
        Self: Sized,
    {
        struct State<'s, S> {
            store: &'s S,
            read: ReadAll,
            head: Option<Position>,
            done: bool,
        }
        let state = State {
            store: self,
            read,
            head: None,
            done: false,
        };
        Box::pin(futures_util::stream::unfold(
            state,
            |mut state| async move {
                loop {
                    if state.done {
                        return None;
                    }
                    let head = match state.head {
                        Some(head) => head,
                        None => match state.store.head().await {
                            Ok(head) => *state.head.insert(head),
                            Err(e) => {
                                state.done = true;
                                return Some((Err(e), state));
                            }
                        },
                    };
                    let start = state.read.start();
                    if start >= head {
                        return None;
                    }
                    let page = match state.store.read_all(state.read.clone()).await {
                        Ok(page) => page,
                        Err(e) => {
                            state.done = true;
                            return Some((Err(e), state));
                        }
                    };
                    // A page that moved nothing forward (a limit of 0) would
                    // repeat forever.
                    state.done = page.read_through <= start || page.read_through >= head;
                    state.read = state.read.clone().after_position(page.read_through);
                    if !page.is_empty() {
                        return Some((Ok(page), state));
                    }
                }
            },
        ))
    }

    /// This store with every read going through `upcasters`: needed only to
    /// read events that an upcaster splits in several, since
    /// [`RecordedEvent::decode`] applies the event type's own upcasters.
    ///
    /// ```
    /// use annals_core::testkit::bank::AccountEvent;
    /// use annals_core::upcast::Upcasters;
    /// use annals_core::{EventStoreExt, InMemoryStore};
    /// let store = InMemoryStore::new().with_upcasters(Upcasters::for_events::<AccountEvent>()?);
    /// # let _ = store;
    /// # Ok::<(), annals_core::upcast::RegistryError>(())
    /// ```
    fn with_upcasters(self, upcasters: Upcasters) -> UpcastingStore<Self>
    where
        Self: Sized,
    {
        UpcastingStore::new(self, upcasters)
    }
}

impl<S: EventStore + ?Sized> EventStoreExt for S {}
