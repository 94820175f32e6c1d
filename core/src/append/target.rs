//! The append sequence, written once for every backend.

use crate::append::error::AppendError;
use crate::append::outcome::AppendOutcome;
use crate::append::prior::PriorAppend;
use crate::append::request::{AppendRequest, MAX_VERSION};
use crate::append::tracking::Tracking;
use crate::error::{BackendError, BackendErrorKind};
use crate::event::{EventId, NewEvent, Position, RecordedEvent, Timestamp};
use crate::id::StreamId;

/// One row an append inserts: an event at its stream version. The backend
/// gives it its position, the next in the global log.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct PlannedRow<'r> {
    /// The stream.
    pub stream: &'r StreamId,
    /// The event's version in the stream.
    pub version: u64,
    /// When the store records it (the same for every row of an append).
    pub recorded_at: Timestamp,
    /// The event.
    pub event: &'r NewEvent,
}

/// Where an insert went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Inserted {
    /// The row is stored at this position of the global log.
    At(Position),
    /// An event with the row's id is already stored; nothing was inserted.
    IdTaken,
}

/// What a backend does for an append inside its write transaction: the
/// storage half of [`run_append`].
///
/// `Error` is the backend's own failure (an I/O error, a lost connection):
/// it ends the append, and the backend reports it as it sees fit.
pub trait AppendTarget {
    /// The backend's own failure.
    type Error;

    /// The stream's current version, `None` when it has no events.
    fn current_version(&mut self, stream: &StreamId) -> Result<Option<u64>, Self::Error>;

    /// Inserts one row at the next position of the global log: the one
    /// after the newest committed or inserted so far, so that positions are
    /// assigned in commit order. Says where it went.
    fn insert(&mut self, row: &PlannedRow<'_>) -> Result<Inserted, Self::Error>;

    /// Removes every row this append inserted so far, and the checkpoint
    /// it set, if it did.
    fn undo(&mut self) -> Result<(), Self::Error>;

    /// The stored event with this id, if any.
    fn find_event(&mut self, id: EventId) -> Result<Option<RecordedEvent>, Self::Error>;

    /// The position of the checkpoint stored under `name`, `None` when the
    /// name has none. It sees what earlier appends of the same write
    /// transaction set, committed or not yet, so that two appends tracking
    /// one name in one group commit cannot both pass.
    fn tracked_position(&mut self, name: &str) -> Result<Option<Position>, Self::Error>;

    /// Sets the checkpoint `tracking.name` to `tracking.checkpoint`,
    /// exactly, as part of this append: it commits with the append's rows
    /// or not at all, and the name's skipped events stay as they are.
    /// `saved_at` is the append's `recorded_at`.
    fn set_checkpoint(
        &mut self,
        tracking: &Tracking,
        saved_at: Timestamp,
    ) -> Result<(), Self::Error>;
}

/// How [`run_append`] ended.
#[derive(Debug)]
#[must_use]
pub enum Appended {
    /// Every row is inserted: the append is done once the backend commits.
    Inserted(AppendOutcome),
    /// Nothing was written: the request is a retry of an append committed
    /// before, and this is the original result.
    AlreadyCommitted(AppendOutcome),
    /// Nothing was written: the append is refused.
    Refused(AppendError),
}

impl Appended {
    /// The answer for the caller.
    pub fn into_result(self) -> Result<AppendOutcome, AppendError> {
        match self {
            Appended::Inserted(outcome) | Appended::AlreadyCommitted(outcome) => Ok(outcome),
            Appended::Refused(error) => Err(error),
        }
    }
}

/// Runs one append against a backend's write transaction, the same way on
/// every backend:
///
/// 1. a tracked checkpoint ([`AppendRequest::track`]) must be stored below
///    the position the append tracks, or not at all;
/// 2. each stream's current version must meet its expected version, and
///    its events must fit below [`MAX_VERSION`];
/// 3. events get versions from the stream's current version + 1 and are
///    inserted, each at the position the backend gives it, in order; then
///    the tracked checkpoint is set;
/// 4. when the tracked checkpoint or a stream refuses, or an event id is
///    already stored, whatever was inserted is undone and the request's ids
///    are looked up: a retry of an append already committed gets its
///    original result, a partial overlap or a reused id an error, anything
///    else the refusal.
///
/// The tracked checkpoint is checked first: a second runner reacting to an
/// event already reacted to learns it is
/// [`AppendError::AlreadyTracked`], and moves on, rather than see a
/// conflict and decide again.
///
/// Call [`AppendRequest::check`] first, before the transaction. Positions
/// are assigned inside the transaction so that commit order is position
/// order; a backend that gives an append's rows positions that do not
/// increase is reported as a backend error, and nothing of the append stays.
pub fn run_append<T: AppendTarget + ?Sized>(
    target: &mut T,
    request: &AppendRequest,
    recorded_at: Timestamp,
) -> Result<Appended, T::Error> {
    if let Some(tracking) = request.tracking() {
        let requested = tracking.first;
        if let Some(stored) = target.tracked_position(&tracking.name)? {
            if stored >= requested {
                let tracked = AppendError::AlreadyTracked {
                    name: tracking.name.clone(),
                    stored,
                    requested,
                };
                return look_up_prior(target, request, tracked);
            }
        }
    }
    let mut first_versions = Vec::with_capacity(request.streams().len());
    for s in request.streams() {
        let current = target.current_version(&s.stream)?;
        if !s.expected.matches(current) {
            let conflict = AppendError::Conflict {
                stream: s.stream.clone(),
                expected: s.expected,
                actual: current.into(),
            };
            return look_up_prior(target, request, conflict);
        }
        let base = current.unwrap_or(0);
        let fits = u64::try_from(s.events.len())
            .ok()
            .and_then(|n| base.checked_add(n))
            .is_some_and(|last| last <= MAX_VERSION);
        if !fits {
            let overflow = AppendError::VersionOverflow {
                stream: s.stream.clone(),
            };
            return look_up_prior(target, request, overflow);
        }
        first_versions.push(base + 1);
    }
    let mut previous = Position::START;
    let mut recorded = Vec::with_capacity(request.event_count());
    for (s, first_version) in request.streams().iter().zip(first_versions) {
        for (event, version) in s.events.iter().zip(first_version..) {
            let row = PlannedRow {
                stream: &s.stream,
                version,
                recorded_at,
                event,
            };
            let position = match target.insert(&row)? {
                Inserted::At(position) if position > previous => position,
                Inserted::At(_) => {
                    target.undo()?;
                    return Ok(Appended::Refused(AppendError::Backend(BackendError::new(
                        BackendErrorKind::Corrupt,
                        "the store gave an append positions that do not increase",
                    ))));
                }
                Inserted::IdTaken => {
                    target.undo()?;
                    let unexplained = AppendError::Backend(BackendError::new(
                        BackendErrorKind::Other,
                        "an event id was reported as stored, but no stored event has it",
                    ));
                    return look_up_prior(target, request, unexplained);
                }
            };
            previous = position;
            recorded.push(event.clone().into_recorded(
                s.stream.clone(),
                version,
                position,
                recorded_at,
            ));
        }
    }
    if let Some(tracking) = request.tracking() {
        target.set_checkpoint(tracking, recorded_at)?;
    }
    Ok(Appended::Inserted(AppendOutcome::new(recorded)))
}

/// Nothing of the request is written: tells a retry of a committed append
/// (its original result) from a refusal.
fn look_up_prior<T: AppendTarget + ?Sized>(
    target: &mut T,
    request: &AppendRequest,
    refusal: AppendError,
) -> Result<Appended, T::Error> {
    let mut stored = Vec::with_capacity(request.event_count());
    for event in request.events() {
        stored.push(target.find_event(event.event_id())?);
    }
    Ok(match request.find_prior_commit(stored) {
        Ok(PriorAppend::Committed(original)) => Appended::AlreadyCommitted(original),
        Ok(PriorAppend::NotFound) => Appended::Refused(refusal),
        Err(reuse) => Appended::Refused(reuse),
    })
}
