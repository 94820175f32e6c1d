//! Handler requests: durable work to do for committed events.
//!
//! A durable event handler (sending the welcome email, calling a webhook)
//! must run once for every event it is for, even across crashes. So its
//! work is first written down: a processor follows the log and, for every
//! event and every handler configured for it, stores one *request* in the
//! same step that moves the handler's checkpoint past the event. A crash
//! before that step loses nothing (the event is read again); a crash after
//! it leaves the request stored. Executors then claim due requests, run
//! their handlers and record the outcome: done, failed and due again
//! later, or dead after too many failures.
//!
//! The store keeps requests beside the log ([`HandlerStore`]); the handlers
//! and their executors live in `annals-projections`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::checkpoint::{Checkpoint, CheckpointStore};
use crate::error::BackendError;
use crate::event::{EventId, Position, Timestamp};
use crate::id::{EventType, StreamId};

/// A stored request's number, given by the store, unique within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A request to store: handler `handler` is to run for the event
/// `event_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRequest {
    /// The handler's stable name.
    pub handler: String,
    /// The event (for an event an upcaster split, the part's id).
    pub event_id: EventId,
    /// Where the event is in the global log.
    pub position: Position,
    /// The event's type, as the handler decodes it.
    pub event_type: EventType,
    /// The event's stream.
    pub stream_id: StreamId,
    /// Higher runs first among due requests.
    pub priority: i32,
    /// Requests of one handler with the same key run one at a time, in
    /// position order; `None` runs in parallel with anything.
    pub ordering_key: Option<String>,
}

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RequestStatus {
    /// Waiting to run (now, or at its due time after a failure).
    Pending,
    /// Claimed by an executor whose claim has not expired.
    Running,
    /// Its handler succeeded.
    Done,
    /// Failed as often as allowed, or failed permanently: kept for a person
    /// to requeue or discard.
    Dead,
    /// A dead request given up on, with a reason.
    Discarded,
}

impl RequestStatus {
    /// The status's name in lower case: `pending`, `running`, `done`,
    /// `dead` or `discarded`.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Pending => "pending",
            RequestStatus::Running => "running",
            RequestStatus::Done => "done",
            RequestStatus::Dead => "dead",
            RequestStatus::Discarded => "discarded",
        }
    }
}

impl fmt::Display for RequestStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One failed attempt of a request: what went wrong and when, never the
/// event's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptError {
    /// Which attempt failed (1 for the first).
    pub attempt: u32,
    /// The handler's error, or why the attempt ended (a panic, an expired
    /// claim).
    pub error: String,
    /// When it failed.
    pub failed_at: Timestamp,
}

/// A stored request, as the store lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerRequest {
    /// Its number.
    pub id: RequestId,
    /// The handler's name.
    pub handler: String,
    /// The event.
    pub event_id: EventId,
    /// Where the event is in the global log.
    pub position: Position,
    /// The event's type.
    pub event_type: EventType,
    /// The event's stream.
    pub stream_id: StreamId,
    /// Its priority (higher first).
    pub priority: i32,
    /// Its ordering key, if its handler keeps order.
    pub ordering_key: Option<String>,
    /// Where it stands at the time it was read.
    pub status: RequestStatus,
    /// How many times it was started (claimed), over its whole life.
    pub attempts: u32,
    /// Failures since it was made or last requeued: what the handler's
    /// limit counts.
    pub failures: u32,
    /// Every failure, oldest first, requeues included.
    pub errors: Vec<AttemptError>,
    /// When it was stored.
    pub created_at: Timestamp,
    /// When it is (or was) due to run.
    pub due_at: Timestamp,
    /// When it last changed status.
    pub updated_at: Timestamp,
    /// Why it was discarded.
    pub discard_reason: Option<String>,
}

/// What an executor asks for when it claims requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Who claims: the executor's id, unique per running executor.
    pub owner: String,
    /// The handlers it runs; requests of others are left alone.
    pub handlers: Vec<String>,
    /// The time now, by the executor's clock.
    pub now: Timestamp,
    /// How long the claim holds unless it is renewed or answered.
    pub lease: Duration,
    /// Most requests to claim.
    pub limit: usize,
}

/// How a claimed request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Finish {
    /// The handler succeeded.
    Done,
    /// The handler failed; the request is due again at `retry_at`, or dead
    /// when it is `None`.
    Failed {
        /// What went wrong.
        error: String,
        /// When to try again; `None` makes it dead.
        retry_at: Option<Timestamp>,
    },
    /// The executor stopped before the handler ended: the request goes back
    /// to pending, due now, and the attempt counts as no failure.
    Released,
}

/// Which requests to list, or to requeue. Every field left `None` matches
/// everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestFilter {
    /// One request.
    pub id: Option<RequestId>,
    /// In this status.
    pub status: Option<RequestStatus>,
    /// Of this handler.
    pub handler: Option<String>,
    /// For events of this type.
    pub event_type: Option<String>,
    /// Last changed at or after this time.
    pub since: Option<Timestamp>,
    /// Last changed before this time.
    pub before: Option<Timestamp>,
    /// Only requests numbered after this one (to page through a long list).
    pub after: Option<RequestId>,
    /// Most requests to list (all when `None`).
    pub limit: Option<usize>,
}

impl RequestFilter {
    /// Every request.
    pub fn all() -> Self {
        RequestFilter::default()
    }

    /// The dead requests: the dead letters.
    pub fn dead() -> Self {
        RequestFilter::all().status(RequestStatus::Dead)
    }

    /// Only the request `id`.
    pub fn id(mut self, id: RequestId) -> Self {
        self.id = Some(id);
        self
    }

    /// Only requests in `status`.
    pub fn status(mut self, status: RequestStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Only requests of `handler`.
    pub fn handler(mut self, handler: impl Into<String>) -> Self {
        self.handler = Some(handler.into());
        self
    }

    /// Only requests for events of type `event_type`.
    pub fn event_type(mut self, event_type: impl Into<String>) -> Self {
        self.event_type = Some(event_type.into());
        self
    }

    /// Only requests last changed at or after `time`.
    pub fn since(mut self, time: Timestamp) -> Self {
        self.since = Some(time);
        self
    }

    /// Only requests last changed before `time`.
    pub fn before(mut self, time: Timestamp) -> Self {
        self.before = Some(time);
        self
    }

    /// Only requests numbered after `id`.
    pub fn after(mut self, id: RequestId) -> Self {
        self.after = Some(id);
        self
    }

    /// At most `limit` requests.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Whether `request` (as listed, its status read at some time) matches.
    pub fn matches(&self, request: &HandlerRequest) -> bool {
        self.id.is_none_or(|id| id == request.id)
            && self.status.is_none_or(|s| s == request.status)
            && self.handler.as_ref().is_none_or(|h| *h == request.handler)
            && self
                .event_type
                .as_ref()
                .is_none_or(|t| t == request.event_type.as_str())
            && self.since.is_none_or(|t| request.updated_at >= t)
            && self.before.is_none_or(|t| request.updated_at < t)
            && self.after.is_none_or(|id| request.id > id)
    }
}

/// How many requests stand where.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// Waiting to run, due or not.
    pub pending: u64,
    /// Claimed, with a claim that holds.
    pub running: u64,
    /// Succeeded.
    pub done: u64,
    /// Dead letters.
    pub dead: u64,
    /// Dead letters given up on.
    pub discarded: u64,
}

/// Where durable handlers' requests are kept, beside the log.
///
/// 1. `enqueue_requests` moves each named checkpoint forward (as
///    [`CheckpointStore::save_checkpoint`] does) and stores the requests,
///    in one step: all or nothing. A request for a (handler, event) pair
///    that is already stored is not stored again, so each pair has at most
///    one request whatever is retried or raced. A new request is pending,
///    due at `now`, with no attempts.
/// 2. `claim_requests` claims at most `limit` due pending requests of the
///    given handlers whose claim (if any) has expired, highest priority
///    first, then lowest position; a request with an ordering key is only
///    claimed when no pending request of its handler with the same key
///    comes before it in position order. A claimed request is running,
///    held by the owner until `now + lease`, and its attempts count one
///    more. A request whose previous claim expired unanswered gets a
///    failure recorded for that attempt ("claim expired") as it is claimed
///    again. Two claims, however they race, never both hold one request.
/// 3. `renew_claims` moves the expiry of the owner's claims on the given
///    requests to `until`, even of a claim that expired while no one else
///    claimed the request; requests claimed by another are left.
/// 4. `finish_request` records how the owner's attempt ended, if the claim
///    is still the owner's (an expired claim no one has taken since still
///    is; returns `false` and changes nothing otherwise): done; failed (the error recorded, failures one more, then
///    pending and due at `retry_at`, or dead); or released (pending, due
///    now, the attempt not counted as a failure).
/// 5. `list_requests` lists the requests the filter matches, by number.
/// 6. `requeue_requests` makes the dead requests the filter matches pending
///    again, due at `now`, with their failures back to zero and their
///    history kept; returns how many.
/// 7. `discard_request` gives up on a dead request, recording the reason;
///    `false` if it is not dead.
/// 8. `request_counts` counts requests by status at `now`;
///    `unsettled_requests` counts those pending or running (whatever the
///    time), cheaply enough to be asked often.
#[async_trait]
pub trait HandlerStore: CheckpointStore {
    /// Moves `checkpoints` forward and stores `requests`, in one step.
    async fn enqueue_requests(
        &self,
        checkpoints: &[(String, Checkpoint)],
        requests: &[NewRequest],
        now: Timestamp,
    ) -> Result<(), BackendError>;

    /// Claims due requests, as `claim` asks.
    async fn claim_requests(&self, claim: &Claim) -> Result<Vec<HandlerRequest>, BackendError>;

    /// Extends `owner`'s claims on `ids` until `until`.
    async fn renew_claims(
        &self,
        owner: &str,
        ids: &[RequestId],
        until: Timestamp,
    ) -> Result<(), BackendError>;

    /// Records how `owner`'s attempt of request `id` ended; `false` if the
    /// claim was lost.
    async fn finish_request(
        &self,
        id: RequestId,
        owner: &str,
        finish: Finish,
        now: Timestamp,
    ) -> Result<bool, BackendError>;

    /// The requests `filter` matches, by number, as they stand at `now`.
    async fn list_requests(
        &self,
        filter: &RequestFilter,
        now: Timestamp,
    ) -> Result<Vec<HandlerRequest>, BackendError>;

    /// Makes the dead requests `filter` matches pending again.
    async fn requeue_requests(
        &self,
        filter: &RequestFilter,
        now: Timestamp,
    ) -> Result<u64, BackendError>;

    /// Gives up on dead request `id`, recording `reason`.
    async fn discard_request(
        &self,
        id: RequestId,
        reason: &str,
        now: Timestamp,
    ) -> Result<bool, BackendError>;

    /// How many requests stand where, at `now`.
    async fn request_counts(&self, now: Timestamp) -> Result<RequestCounts, BackendError>;

    /// How many requests are pending or running.
    async fn unsettled_requests(&self) -> Result<u64, BackendError>;
}

#[async_trait]
impl<S: HandlerStore + ?Sized> HandlerStore for Arc<S> {
    async fn enqueue_requests(
        &self,
        checkpoints: &[(String, Checkpoint)],
        requests: &[NewRequest],
        now: Timestamp,
    ) -> Result<(), BackendError> {
        (**self).enqueue_requests(checkpoints, requests, now).await
    }
    async fn claim_requests(&self, claim: &Claim) -> Result<Vec<HandlerRequest>, BackendError> {
        (**self).claim_requests(claim).await
    }
    async fn renew_claims(
        &self,
        owner: &str,
        ids: &[RequestId],
        until: Timestamp,
    ) -> Result<(), BackendError> {
        (**self).renew_claims(owner, ids, until).await
    }
    async fn finish_request(
        &self,
        id: RequestId,
        owner: &str,
        finish: Finish,
        now: Timestamp,
    ) -> Result<bool, BackendError> {
        (**self).finish_request(id, owner, finish, now).await
    }
    async fn list_requests(
        &self,
        filter: &RequestFilter,
        now: Timestamp,
    ) -> Result<Vec<HandlerRequest>, BackendError> {
        (**self).list_requests(filter, now).await
    }
    async fn requeue_requests(
        &self,
        filter: &RequestFilter,
        now: Timestamp,
    ) -> Result<u64, BackendError> {
        (**self).requeue_requests(filter, now).await
    }
    async fn discard_request(
        &self,
        id: RequestId,
        reason: &str,
        now: Timestamp,
    ) -> Result<bool, BackendError> {
        (**self).discard_request(id, reason, now).await
    }
    async fn request_counts(&self, now: Timestamp) -> Result<RequestCounts, BackendError> {
        (**self).request_counts(now).await
    }
    async fn unsettled_requests(&self) -> Result<u64, BackendError> {
        (**self).unsettled_requests().await
    }
}

/// `time + duration`, saturating at the largest timestamp.
pub fn later(time: Timestamp, duration: Duration) -> Timestamp {
    let micros = i64::try_from(duration.as_micros()).unwrap_or(i64::MAX);
    Timestamp::from_unix_micros(time.as_unix_micros().saturating_add(micros))
}

/// The failure recorded for an attempt whose claim expired unanswered.
pub const CLAIM_EXPIRED: &str =
    "the claim expired before the attempt ended (the executor stopped or lost its lease)";

#[cfg(test)]
mod tests {
    use super::*;

    /// Keeps [`HandlerStore`] object-safe: this fails to compile otherwise.
    #[allow(dead_code)]
    fn handler_store_is_object_safe(store: &dyn HandlerStore) -> &dyn HandlerStore {
        store
    }
}
