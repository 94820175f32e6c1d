//! A unit of work: decide on several aggregates, commit everything in one
//! atomic append.
//!
//! A command that touches several aggregates (place an order and reserve
//! its stock) must not half-happen. A unit loads each aggregate it needs
//! once, lets each decide, and keeps what they decided; the runner then
//! appends every stream decided on, each with `Exact(the version loaded)`,
//! in one atomic append. If any of them moved meanwhile, the append is
//! refused as a whole, and the whole unit runs again on fresh state, as
//! often as the retry policy allows.
//!
//! Aggregates a unit only reads (loads without deciding on) are not part
//! of the append, so their versions are not checked at commit.
//!
//! In the append, events are grouped by stream, streams in the order the
//! unit first loaded them: a reader of the global log sees all of one
//! aggregate's new events, then the next aggregate's, not the order in
//! which the unit decided them. All of them commit at once, so no reader
//! sees some without the others.
//!
//! A repository that caches an aggregate a unit then changes finds out at
//! its next command on it, which is decided again on fresh state.

use std::any::Any;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use crate::aggregate::Aggregate;
use crate::append::{AppendError, AppendOutcome, AppendRequest, ExpectedVersion};
use crate::contract::EventStore;
use crate::event::{NewEvent, Position, RecordedEvent};
use crate::id::StreamId;
use crate::repository::context::{CommandContext, RetryPolicy};
use crate::repository::error::{CommandError, LoadError};
use crate::repository::load::Replayer;

/// Runs units of work against a store, retrying a unit as a whole when its
/// append meets a conflict.
///
/// ```
/// use annals_core::testkit::bank::{Account, AccountCommand};
/// use annals_core::{CommandContext, InMemoryStore, RetryPolicy, UnitOfWork};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let work = UnitOfWork::new(InMemoryStore::new()).with_retry(RetryPolicy::on_conflict(3));
/// let ctx = CommandContext::new();
/// // Open two accounts together: both or neither.
/// let done = work
///     .run(&ctx, |unit| async move {
///         unit.execute::<Account>("ada", AccountCommand::Open { owner: "Ada".into() }).await?;
///         unit.execute::<Account>("alan", AccountCommand::Open { owner: "Alan".into() }).await?;
///         Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
///     })
///     .await?;
/// assert_eq!(done.events.len(), 2);
/// # Ok(()) }
/// ```
pub struct UnitOfWork<S> {
    store: Arc<S>,
    retry: RetryPolicy,
}

impl<S> Clone for UnitOfWork<S> {
    fn clone(&self) -> Self {
        UnitOfWork {
            store: self.store.clone(),
            retry: self.retry,
        }
    }
}

/// What a unit of work did.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Done<T> {
    /// What the unit's code returned.
    pub value: T,
    /// The events recorded, in commit order (none if nothing was decided).
    pub events: Vec<RecordedEvent>,
    /// How many times the unit ran: 1, plus one per conflict retried.
    pub attempts: u32,
}

impl<T> Done<T> {
    /// The position of the unit's last event in the global log
    /// ([`Position::START`] if it recorded none): wait for a projection to
    /// reach it to read the unit's own writes.
    pub fn position(&self) -> Position {
        self.events.last().map_or(Position::START, |e| e.position)
    }
}

impl<S: EventStore + 'static> UnitOfWork<S> {
    /// Units of work on `store`, returning conflicts to the caller.
    pub fn new(store: S) -> Self {
        UnitOfWork {
            store: Arc::new(store),
            retry: RetryPolicy::never(),
        }
    }

    /// Sets how often a unit whose append met a conflict runs again.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// A fresh unit, for code that commits it itself (see
    /// [`Unit::append_request`]).
    pub fn unit(&self, ctx: &CommandContext) -> Unit<S> {
        Unit {
            store: self.store.clone(),
            ctx: Arc::new(ctx.clone()),
            state: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Runs `work` on a fresh unit and appends what it decided, in one
    /// atomic append; on a conflict, runs it again on a fresh unit as
    /// often as the retry policy allows.
    ///
    /// `work` may run more than once: it should only load and decide, and
    /// leave effects outside the store to code that runs after the commit.
    /// If it fails, nothing is appended and its error is returned.
    ///
    /// Its error type `E` takes the append's failure (`From<AppendError>`);
    /// with the facade, `annals::Error` takes every failure a unit's code
    /// meets, keeps a conflict matchable and the aggregate's own refusal
    /// (`Error::refusal::<E>()`). An aggregate type whose category or
    /// upcasters are invalid fails its first load
    /// ([`LoadError::Aggregate`]).
    ///
    /// Because `work` may run again, the future it returns cannot take what
    /// the closure captured; borrow it for the future instead:
    ///
    /// ```
    /// # use annals_core::testkit::bank::{Account, AccountCommand};
    /// # use annals_core::{CommandContext, InMemoryStore, UnitOfWork};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// # let work = UnitOfWork::new(InMemoryStore::new());
    /// let owner = String::from("Ada");
    /// let done = work
    ///     .run(&CommandContext::new(), |unit| {
    ///         let owner = &owner; // each run borrows it
    ///         async move {
    ///             let open = AccountCommand::Open { owner: owner.clone() };
    ///             unit.execute::<Account>("ada", open).await?;
    ///             Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    ///         }
    ///     })
    ///     .await?;
    /// assert_eq!(done.attempts, 1);
    /// # Ok(()) }
    /// ```
    pub async fn run<T, E, F, Fut>(&self, ctx: &CommandContext, mut work: F) -> Result<Done<T>, E>
    where
        F: FnMut(Unit<S>) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: From<AppendError>,
    {
        let mut retries_left = self.retry.max_retries();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let unit = self.unit(ctx);
            let value = work(unit.clone()).await?;
            let request = unit.append_request();
            if request.streams().is_empty() {
                return Ok(Done {
                    value,
                    events: Vec::new(),
                    attempts,
                });
            }
            match self.store.append(request).await {
                Ok(outcome) => {
                    return Ok(Done {
                        value,
                        events: outcome.into_events(),
                        attempts,
                    })
                }
                Err(AppendError::Conflict { stream, .. }) if retries_left > 0 => {
                    retries_left -= 1;
                    tracing::debug!(stream = %stream, "unit of work met a conflict; running it again");
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Commits a unit's decisions in one atomic append; for code that runs
    /// a unit without [`UnitOfWork::run`].
    pub async fn commit(&self, unit: &Unit<S>) -> Result<Option<AppendOutcome>, AppendError> {
        let request = unit.append_request();
        if request.streams().is_empty() {
            return Ok(None);
        }
        self.store.append(request).await.map(Some)
    }
}

/// One aggregate in a unit: the version loaded, the state with the unit's
/// decisions applied, and the events decided.
struct Member {
    stream: StreamId,
    loaded_version: u64,
    state: Box<dyn Any + Send>,
    decided: Vec<NewEvent>,
}

/// The aggregates a unit of work has loaded and what it decided on them.
///
/// A cheap handle: clones share the same unit. Each aggregate is loaded
/// once per unit; later loads and commands see the unit's own decisions.
pub struct Unit<S> {
    store: Arc<S>,
    ctx: Arc<CommandContext>,
    state: Arc<Mutex<Vec<Member>>>,
}

impl<S> Clone for Unit<S> {
    fn clone(&self) -> Self {
        Unit {
            store: self.store.clone(),
            ctx: self.ctx.clone(),
            state: self.state.clone(),
        }
    }
}

impl<S> Unit<S> {
    /// The same unit (its aggregates and decisions are shared), deciding
    /// with another context from now on: for code that decides on behalf
    /// of several causes in one unit, such as a saga committing its
    /// reactions to several events at once, each with its own causation.
    pub fn with_context(&self, ctx: &CommandContext) -> Unit<S> {
        Unit {
            store: self.store.clone(),
            ctx: Arc::new(ctx.clone()),
            state: self.state.clone(),
        }
    }
}

impl<S: EventStore> Unit<S> {
    /// The metadata every event the unit decides gets.
    pub fn context(&self) -> &CommandContext {
        &self.ctx
    }

    /// The aggregate `id` as this unit sees it: loaded from the store on
    /// first use, with what the unit decided on it since.
    pub async fn load<A: Aggregate>(&self, id: &str) -> Result<A, LoadError> {
        let stream = StreamId::from_parts(A::CATEGORY, id)?;
        self.ensure_loaded::<A>(&stream).await?;
        self.with_member::<A, _>(&stream, |state, _| state.clone())
    }

    /// Lets aggregate `id` handle `command` on the state this unit sees, and
    /// keeps the events it decides for the unit's append. Returns the state
    /// after them. A refusal is returned as
    /// [`CommandError::Refused`], and the unit is unchanged.
    pub async fn execute<A: Aggregate>(
        &self,
        id: &str,
        command: A::Command,
    ) -> Result<A, CommandError<A::Error>> {
        let stream = StreamId::from_parts(A::CATEGORY, id).map_err(LoadError::from)?;
        self.ensure_loaded::<A>(&stream).await?;
        let metadata = self.ctx.metadata().clone();
        self.with_member::<A, _>(&stream, |state, decided_so_far| {
            let decided = state
                .handle(command)
                .map_err(|error| CommandError::Refused {
                    stream: stream.clone(),
                    error,
                })?;
            let encoded = decided
                .iter()
                .map(|event| NewEvent::from_domain(event, metadata.clone()))
                .collect::<Result<Vec<_>, _>>()?;
            for event in &decided {
                state.apply(event);
            }
            decided_so_far.extend(encoded);
            Ok(state.clone())
        })?
    }

    /// The append of everything this unit decided: one stream per
    /// aggregate decided on, with `Exact(the version loaded)`, in the order
    /// the aggregates were first loaded. Empty when nothing was decided.
    pub fn append_request(&self) -> AppendRequest {
        let members = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        members
            .iter()
            .filter(|m| !m.decided.is_empty())
            .fold(AppendRequest::new(), |request, m| {
                request.stream(
                    m.stream.clone(),
                    ExpectedVersion::Exact(m.loaded_version),
                    m.decided.clone(),
                )
            })
    }

    /// Loads the stream's aggregate into the unit unless it is there.
    async fn ensure_loaded<A: Aggregate>(&self, stream: &StreamId) -> Result<(), LoadError> {
        if self.member_type::<A>(stream)?.is_some() {
            return Ok(());
        }
        let replayer = Replayer::of::<A>()?;
        let mut state = A::default();
        let version = replayer.replay(&*self.store, stream, &mut state, 0).await?;
        let mut members = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        // Two loads of one stream may race (the unit's code may load
        // concurrently): the first to finish wins, the other's is dropped.
        if !members.iter().any(|m| &m.stream == stream) {
            members.push(Member {
                stream: stream.clone(),
                loaded_version: version,
                state: Box::new(state),
                decided: Vec::new(),
            });
        }
        Ok(())
    }

    /// Whether the stream is in the unit (as `A`).
    fn member_type<A: Aggregate>(&self, stream: &StreamId) -> Result<Option<()>, LoadError> {
        let members = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match members.iter().find(|m| &m.stream == stream) {
            None => Ok(None),
            Some(m) if m.state.is::<A>() => Ok(Some(())),
            Some(_) => Err(LoadError::OtherAggregateType {
                stream: stream.clone(),
            }),
        }
    }

    /// Runs `f` on the stream's member, which must be loaded as `A`.
    fn with_member<A: Aggregate, T>(
        &self,
        stream: &StreamId,
        f: impl FnOnce(&mut A, &mut Vec<NewEvent>) -> T,
    ) -> Result<T, LoadError> {
        let mut members = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let member = members
            .iter_mut()
            .find(|m| &m.stream == stream)
            .ok_or_else(|| LoadError::OtherAggregateType {
                stream: stream.clone(),
            })?;
        let Member { state, decided, .. } = member;
        let state = state
            .downcast_mut::<A>()
            .ok_or_else(|| LoadError::OtherAggregateType {
                stream: stream.clone(),
            })?;
        Ok(f(state, decided))
    }
}
