//! The repository's aggregate cache: decided-on state kept between
//! commands, so that a command on a hot aggregate reads nothing.
//!
//! An entry is the state as of one stream version. A command decides on a
//! copy of it and appends with `Exact(that version)`: if anyone else
//! appended in between (another process, another repository), the store
//! refuses, the entry is dropped, and the command is decided again on a
//! fresh load. A command that appends nothing (refused, or deciding
//! nothing) is decided again on a fresh load too. A stale entry can
//! therefore cost a second decision, never an answer decided on stale
//! state. The cache is bounded by entries and evicts the least recently
//! used.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};

use lru::LruCache;

use crate::id::StreamId;

/// How many aggregates a repository keeps in its cache.
///
/// Default: 1,024 aggregates. [`CacheSize::none`] turns the cache off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSize(usize);

impl CacheSize {
    /// At most `n` aggregates (0: no cache).
    pub fn entries(n: usize) -> Self {
        CacheSize(n)
    }

    /// No cache: every command loads its aggregate.
    pub fn none() -> Self {
        CacheSize(0)
    }

    /// The most aggregates kept.
    pub fn max_entries(&self) -> usize {
        self.0
    }
}

impl Default for CacheSize {
    fn default() -> Self {
        CacheSize(1_024)
    }
}

/// One aggregate's state as of a stream version.
#[derive(Clone)]
pub(crate) struct Entry<A> {
    pub(crate) state: A,
    pub(crate) version: u64,
    /// The version of the newest snapshot known, for the snapshot policy.
    pub(crate) last_snapshot: u64,
}

/// The entries, least recently used first out.
type Entries<A> = LruCache<StreamId, Entry<A>>;

/// The cache, shared by the clones of a repository.
pub(crate) struct AggregateCache<A> {
    entries: Option<Arc<Mutex<Entries<A>>>>,
}

impl<A> Clone for AggregateCache<A> {
    fn clone(&self) -> Self {
        AggregateCache {
            entries: self.entries.clone(),
        }
    }
}

impl<A: Clone> AggregateCache<A> {
    pub(crate) fn new(size: CacheSize) -> Self {
        AggregateCache {
            entries: NonZeroUsize::new(size.0).map(|n| Arc::new(Mutex::new(LruCache::new(n)))),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Entries<A>) -> T) -> Option<T> {
        // The lock is held only for a lookup or an insert and a clone of
        // the state; a panic in a state's `clone` leaves whole entries.
        let entries = self.entries.as_ref()?;
        let mut entries = entries.lock().unwrap_or_else(PoisonError::into_inner);
        Some(f(&mut entries))
    }

    /// A copy of the cached entry, if any.
    pub(crate) fn get(&self, stream: &StreamId) -> Option<Entry<A>> {
        self.with(|entries| entries.get(stream).cloned()).flatten()
    }

    /// Keeps `entry` unless the cache holds a newer version of the stream.
    pub(crate) fn put(&self, stream: &StreamId, entry: Entry<A>) {
        self.with(|entries| {
            let newer = entries
                .peek(stream)
                .is_some_and(|cached| cached.version > entry.version);
            if !newer {
                entries.put(stream.clone(), entry);
            }
        });
    }

    /// Drops the stream's entry.
    pub(crate) fn remove(&self, stream: &StreamId) {
        self.with(|entries| entries.pop(stream));
    }

    /// How many entries are cached.
    pub(crate) fn len(&self) -> usize {
        self.with(|entries| entries.len()).unwrap_or(0)
    }
}
