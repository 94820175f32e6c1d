//! Handler requests kept in memory: the [`HandlerStore`] contract as plain
//! data, for the in-memory store.
//!
//! [`HandlerStore`]: crate::HandlerStore

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::event::{EventId, Position, Timestamp};
use crate::requests::{
    later, AttemptError, Claim, Finish, HandlerRequest, NewRequest, RequestCounts, RequestFilter,
    RequestId, RequestStatus, CLAIM_EXPIRED,
};

/// A request and who holds it.
struct Stored {
    /// Its status is never `Running`: a pending request with a claim that
    /// holds is running.
    request: HandlerRequest,
    /// The owner's id and when the claim expires.
    claim: Option<(String, Timestamp)>,
}

impl Stored {
    fn status_at(&self, now: Timestamp) -> RequestStatus {
        match (&self.request.status, &self.claim) {
            (RequestStatus::Pending, Some((_, expires))) if *expires > now => {
                RequestStatus::Running
            }
            (status, _) => *status,
        }
    }

    fn view(&self, now: Timestamp) -> HandlerRequest {
        HandlerRequest {
            status: self.status_at(now),
            ..self.request.clone()
        }
    }

    /// Whether the claim is `owner`'s: an expired claim no one has taken
    /// since still is.
    fn held_by(&self, owner: &str) -> bool {
        self.request.status == RequestStatus::Pending
            && self.claim.as_ref().is_some_and(|(by, _)| by == owner)
    }
}

/// Every request, by number.
#[derive(Default)]
pub(crate) struct RequestBook {
    requests: BTreeMap<RequestId, Stored>,
    pairs: HashSet<(String, EventId)>,
    next: u64,
}

impl RequestBook {
    /// Stores `requests` not stored yet.
    pub(crate) fn enqueue(&mut self, requests: &[NewRequest], now: Timestamp) {
        for new in requests {
            if !self.pairs.insert((new.handler.clone(), new.event_id)) {
                continue;
            }
            self.next += 1;
            let id = RequestId(self.next);
            let request = HandlerRequest {
                id,
                handler: new.handler.clone(),
                event_id: new.event_id,
                position: new.position,
                event_type: new.event_type.clone(),
                stream_id: new.stream_id.clone(),
                priority: new.priority,
                ordering_key: new.ordering_key.clone(),
                status: RequestStatus::Pending,
                attempts: 0,
                failures: 0,
                errors: Vec::new(),
                created_at: now,
                due_at: now,
                updated_at: now,
                discard_reason: None,
            };
            self.requests.insert(
                id,
                Stored {
                    request,
                    claim: None,
                },
            );
        }
    }

    pub(crate) fn claim(&mut self, claim: &Claim) -> Vec<HandlerRequest> {
        let now = claim.now;
        // The first pending request of each handler and key: the only one
        // of its key that may run.
        let mut first: HashMap<(&str, &str), (Position, RequestId)> = HashMap::new();
        for stored in self.requests.values() {
            let r = &stored.request;
            if let (RequestStatus::Pending, Some(key)) = (r.status, &r.ordering_key) {
                let slot = first
                    .entry((r.handler.as_str(), key.as_str()))
                    .or_insert((r.position, r.id));
                *slot = (*slot).min((r.position, r.id));
            }
        }
        let unblocked = |r: &HandlerRequest| match &r.ordering_key {
            None => true,
            Some(key) => {
                first.get(&(r.handler.as_str(), key.as_str())) == Some(&(r.position, r.id))
            }
        };
        let mut due: Vec<(i32, Position, RequestId)> = self
            .requests
            .values()
            .filter(|s| {
                s.request.status == RequestStatus::Pending
                    && s.request.due_at <= now
                    && s.claim.as_ref().is_none_or(|(_, expires)| *expires <= now)
                    && claim.handlers.contains(&s.request.handler)
                    && unblocked(&s.request)
            })
            .map(|s| (s.request.priority, s.request.position, s.request.id))
            .collect();
        due.sort_by(|a, b| b.0.cmp(&a.0).then((a.1, a.2).cmp(&(b.1, b.2))));
        let until = later(now, claim.lease);
        due.into_iter()
            .take(claim.limit)
            .filter_map(|(_, _, id)| {
                let stored = self.requests.get_mut(&id)?;
                if stored.claim.is_some() {
                    // The last attempt's claim expired unanswered.
                    stored.request.failures += 1;
                    stored.request.errors.push(AttemptError {
                        attempt: stored.request.attempts,
                        error: CLAIM_EXPIRED.to_owned(),
                        failed_at: now,
                    });
                }
                stored.request.attempts += 1;
                stored.request.updated_at = now;
                stored.claim = Some((claim.owner.clone(), until));
                Some(stored.view(now))
            })
            .collect()
    }

    pub(crate) fn renew(&mut self, owner: &str, ids: &[RequestId], until: Timestamp) {
        for id in ids {
            if let Some(stored) = self.requests.get_mut(id) {
                if stored.held_by(owner) {
                    stored.claim = Some((owner.to_owned(), until));
                }
            }
        }
    }

    pub(crate) fn finish(
        &mut self,
        id: RequestId,
        owner: &str,
        finish: Finish,
        now: Timestamp,
    ) -> bool {
        let Some(stored) = self.requests.get_mut(&id) else {
            return false;
        };
        if !stored.held_by(owner) {
            return false;
        }
        stored.claim = None;
        let request = &mut stored.request;
        request.updated_at = now;
        match finish {
            Finish::Done => request.status = RequestStatus::Done,
            Finish::Failed { error, retry_at } => {
                request.failures += 1;
                request.errors.push(AttemptError {
                    attempt: request.attempts,
                    error,
                    failed_at: now,
                });
                match retry_at {
                    Some(due) => request.due_at = due,
                    None => request.status = RequestStatus::Dead,
                }
            }
            Finish::Released => {
                request.attempts = request.attempts.saturating_sub(1);
                request.due_at = now;
            }
        }
        true
    }

    pub(crate) fn list(&self, filter: &RequestFilter, now: Timestamp) -> Vec<HandlerRequest> {
        self.requests
            .values()
            .map(|s| s.view(now))
            .filter(|r| filter.matches(r))
            .take(filter.limit.unwrap_or(usize::MAX))
            .collect()
    }

    pub(crate) fn requeue(&mut self, filter: &RequestFilter, now: Timestamp) -> u64 {
        let mut count = 0;
        let mut left = filter.limit.unwrap_or(usize::MAX);
        for stored in self.requests.values_mut() {
            if left == 0 {
                break;
            }
            let view = stored.view(now);
            if view.status != RequestStatus::Dead || !filter.matches(&view) {
                continue;
            }
            let request = &mut stored.request;
            request.status = RequestStatus::Pending;
            request.failures = 0;
            request.due_at = now;
            request.updated_at = now;
            count += 1;
            left -= 1;
        }
        count
    }

    pub(crate) fn discard(&mut self, id: RequestId, reason: &str, now: Timestamp) -> bool {
        match self.requests.get_mut(&id) {
            Some(stored) if stored.request.status == RequestStatus::Dead => {
                stored.request.status = RequestStatus::Discarded;
                stored.request.discard_reason = Some(reason.to_owned());
                stored.request.updated_at = now;
                true
            }
            _ => false,
        }
    }

    pub(crate) fn counts(&self, now: Timestamp) -> RequestCounts {
        let mut counts = RequestCounts::default();
        for stored in self.requests.values() {
            let slot = match stored.status_at(now) {
                RequestStatus::Pending => &mut counts.pending,
                RequestStatus::Running => &mut counts.running,
                RequestStatus::Done => &mut counts.done,
                RequestStatus::Dead => &mut counts.dead,
                RequestStatus::Discarded => &mut counts.discarded,
            };
            *slot += 1;
        }
        counts
    }
}
