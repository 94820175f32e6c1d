//! Reading the global log: filters and pages.

use crate::domain::upcasters::registry_of;
use crate::domain::DomainEvent;
use crate::event::{Position, RecordedEvent};
use crate::id::{EventType, StreamId};
use crate::read::stream::MAX_READ_LIMIT;

/// Which events a read of the global log includes.
///
/// Categories and prefixes widen the set of streams: a stream passes if it
/// is in any category named or starts with any prefix named (and every
/// stream passes when none is named). Event types narrow it: an event
/// passes only if its type is one of those named (any type when none is
/// named). So `.category("order").category("stock").event_type(T)` reads
/// the events of type `T` in streams `order-*` and `stock-*`.
///
/// Stream ids compare byte for byte: a category or prefix matches by
/// range, never with SQL `LIKE`, so `_`, `%` and letter case mean
/// themselves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    categories: Vec<String>,
    prefixes: Vec<String>,
    event_types: Option<Vec<EventType>>,
}

impl LogFilter {
    /// The categories named (none: no category filter).
    pub fn categories(&self) -> &[String] {
        &self.categories
    }

    /// The stream id prefixes named (none: no prefix filter).
    pub fn prefixes(&self) -> &[String] {
        &self.prefixes
    }

    /// The event types named, or `None` for every type. `Some` of an empty
    /// list matches nothing.
    pub fn event_types(&self) -> Option<&[EventType]> {
        self.event_types.as_deref()
    }

    /// Whether every stream passes (no category or prefix named).
    pub fn all_streams(&self) -> bool {
        self.categories.is_empty() && self.prefixes.is_empty()
    }

    /// Whether a stream passes the category and prefix filters.
    pub fn matches_stream(&self, stream: &StreamId) -> bool {
        self.all_streams()
            || self.categories.iter().any(|c| stream.category() == c)
            || self
                .prefixes
                .iter()
                .any(|p| stream.as_str().starts_with(p.as_str()))
    }

    /// Whether an event type passes the type filter.
    pub fn matches_type(&self, event_type: &EventType) -> bool {
        self.event_types
            .as_ref()
            .is_none_or(|types| types.contains(event_type))
    }

    /// Whether an event passes every filter.
    pub fn matches(&self, event: &RecordedEvent) -> bool {
        self.matches_stream(&event.stream_id) && self.matches_type(&event.event_type)
    }
}

/// A page of the global log to read: events after a position, optionally
/// filtered (see [`LogFilter`] for how filters combine), at most
/// [`MAX_READ_LIMIT`] (10,000) events unless a lower [`limit`](ReadAll::limit)
/// is set.
///
/// ```
/// use annals_core::testkit::bank::AccountEvent;
/// use annals_core::{Position, ReadAll};
/// let opened = ReadAll::after(Position::START)
///     .category("account")
///     .event_type(AccountEvent::OPENED)
///     .limit(500);
/// let every_account_event = ReadAll::after(Position::START).events_of::<AccountEvent>();
/// # let _ = (opened, every_account_event);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadAll {
    after: Position,
    limit: usize,
    filter: LogFilter,
}

impl ReadAll {
    /// Events after this position (not included); [`Position::START`] for all.
    pub fn after(position: Position) -> Self {
        ReadAll {
            after: position,
            limit: MAX_READ_LIMIT,
            filter: LogFilter::default(),
        }
    }

    /// Returns at most this many events (at most [`MAX_READ_LIMIT`]).
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit.min(MAX_READ_LIMIT);
        self
    }

    /// The same read, starting after another position: the next page
    /// starts after the last page's [`Page::read_through`].
    pub fn after_position(mut self, position: Position) -> Self {
        self.after = position;
        self
    }

    /// Adds streams of this category: `account` matches `account-1`, not
    /// `accounts-1`.
    pub fn category(mut self, category: impl Into<String>) -> Self {
        self.filter.categories.push(category.into());
        self
    }

    /// Adds streams of each of these categories.
    pub fn categories<C: Into<String>>(mut self, categories: impl IntoIterator<Item = C>) -> Self {
        self.filter
            .categories
            .extend(categories.into_iter().map(Into::into));
        self
    }

    /// Adds streams whose id starts with this prefix, byte for byte.
    pub fn stream_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.filter.prefixes.push(prefix.into());
        self
    }

    /// Narrows the read to events of this type (with other calls: of any
    /// of the types named). Event types derived with `#[derive(DomainEvent)]`
    /// have constants: `AccountEvent::OPENED`.
    pub fn event_type(self, event_type: EventType) -> Self {
        self.event_types([event_type])
    }

    /// Narrows the read to events of these types (with other calls: of any
    /// of the types named). An empty list matches nothing.
    pub fn event_types(mut self, types: impl IntoIterator<Item = EventType>) -> Self {
        self.filter
            .event_types
            .get_or_insert_with(Vec::new)
            .extend(types);
        self
    }

    /// Narrows the read to the events a domain event type decodes: its
    /// stored names, and the older names its upcasters bring up to date.
    pub fn events_of<E: DomainEvent>(self) -> Self {
        let current: Vec<EventType> = E::known_types()
            .iter()
            .filter_map(|(name, _)| EventType::new(*name).ok())
            .collect();
        let wanted = match registry_of::<E>() {
            Ok(Some(upcasters)) => upcasters.stored_names_for(&current),
            // A broken registry is reported when the events are decoded.
            _ => current,
        };
        self.event_types(wanted)
    }

    /// The position after which to read.
    pub fn start(&self) -> Position {
        self.after
    }

    /// The most events to return.
    pub fn max_count(&self) -> usize {
        self.limit
    }

    /// The filters.
    pub fn filter(&self) -> &LogFilter {
        &self.filter
    }

    /// Whether an event passes the filters (ignoring position and limit).
    pub fn matches(&self, event: &RecordedEvent) -> bool {
        self.filter.matches(event)
    }
}

/// A page of the global log, and how far the store looked for it.
///
/// Every matching event at a position above the read's start and up to
/// `read_through` is in the page, in position order; none beyond it is.
/// When the page holds fewer events than the read's limit, the store
/// looked through the end of the log as it was when the read began:
/// `read_through` is then at least that head.
///
/// A follower keeps `read_through` as its checkpoint and, on an empty page,
/// waits for the head to pass it:
///
/// ```no_run
/// # async fn follow(store: impl annals_core::EventStore) -> Result<(), Box<dyn std::error::Error>> {
/// use annals_core::{Position, ReadAll};
/// let mut head = store.watch_head();
/// let mut checkpoint = Position::START; // or the one saved last time
/// loop {
///     let page = store.read_all(ReadAll::after(checkpoint).category("order")).await?;
///     for event in &page.events {
///         // handle the event
///     }
///     checkpoint = page.read_through; // save it with what the handler did
///     if page.is_empty() {
///         head.wait_past(checkpoint).await?; // the next commit, here or elsewhere
///     }
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Page {
    /// The matching events, in position order.
    pub events: Vec<RecordedEvent>,
    /// The position up to which the store looked, matching or not.
    pub read_through: Position,
}

impl Page {
    /// A page of events, read through `read_through`; for store backends.
    pub fn new(events: Vec<RecordedEvent>, read_through: Position) -> Self {
        Page {
            events,
            read_through,
        }
    }

    /// Whether the page holds no events.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// How many events the page holds.
    pub fn len(&self) -> usize {
        self.events.len()
    }
}

impl IntoIterator for Page {
    type Item = RecordedEvent;
    type IntoIter = std::vec::IntoIter<RecordedEvent>;
    fn into_iter(self) -> Self::IntoIter {
        self.events.into_iter()
    }
}

impl<'p> IntoIterator for &'p Page {
    type Item = &'p RecordedEvent;
    type IntoIter = std::slice::Iter<'p, RecordedEvent>;
    fn into_iter(self) -> Self::IntoIter {
        self.events.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(s: &str) -> StreamId {
        StreamId::new(s).expect("valid")
    }

    #[test]
    fn limits_are_capped() {
        assert_eq!(ReadAll::after(Position::START).limit(0).max_count(), 0);
        assert_eq!(
            ReadAll::after(Position::START)
                .limit(usize::MAX)
                .max_count(),
            MAX_READ_LIMIT
        );
    }

    #[test]
    fn categories_match_whole_categories_only() {
        let read = ReadAll::after(Position::START).category("account");
        let f = read.filter();
        assert!(f.matches_stream(&stream("account-1")));
        assert!(!f.matches_stream(&stream("accounts-1")));
        assert!(!f.matches_stream(&stream("Account-1")));
    }

    #[test]
    fn categories_and_prefixes_widen_the_streams_read() {
        let read = ReadAll::after(Position::START)
            .category("order")
            .category("stock")
            .stream_prefix("acc_");
        let f = read.filter();
        assert!(f.matches_stream(&stream("order-1")));
        assert!(f.matches_stream(&stream("stock-1")));
        assert!(f.matches_stream(&stream("acc_x-1")));
        assert!(!f.matches_stream(&stream("accx-1")));
        assert!(!f.matches_stream(&stream("parcel-1")));
    }

    #[test]
    fn event_types_narrow_the_streams_read() -> Result<(), crate::InvalidName> {
        let paid = EventType::new("Paid")?;
        let read = ReadAll::after(Position::START)
            .category("order")
            .event_type(paid.clone());
        let f = read.filter();
        assert!(f.matches_type(&paid));
        assert!(!f.matches_type(&EventType::new("Placed")?));
        let nothing = ReadAll::after(Position::START).event_types([]);
        assert!(!nothing.filter().matches_type(&paid));
        assert!(ReadAll::after(Position::START).filter().matches_type(&paid));
        Ok(())
    }
}
