//! The handler request contract: one request per (handler, event), claimed
//! by one executor at a time, in priority and key order, and kept through
//! failure, death, requeue and discard.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::checkpoints::checkpoint;
use super::{ensure, race, CaseResult, Options, Step};
use crate::{
    Claim, EventId, EventType, Finish, HandlerRequest, HandlerStore, NewRequest, Position,
    RequestFilter, RequestId, RequestStatus, StreamId, Timestamp, CLAIM_EXPIRED,
};

/// A fixed time the cases count from (2023-11-14).
fn at(seconds: i64) -> Timestamp {
    Timestamp::from_unix_micros(1_700_000_000_000_000 + seconds * 1_000_000)
}

/// A request of `handler` for an event at `position`, of type `Opened`.
fn request(handler: &str, position: u64) -> NewRequest {
    NewRequest {
        handler: handler.to_owned(),
        event_id: EventId::new(),
        position: Position(position),
        event_type: EventType::new("Opened").expect("valid event type"),
        stream_id: StreamId::new(format!("account-{position}")).expect("valid stream id"),
        priority: 50,
        ordering_key: None,
    }
}

fn keyed(handler: &str, position: u64, key: &str) -> NewRequest {
    NewRequest {
        ordering_key: Some(key.to_owned()),
        ..request(handler, position)
    }
}

fn claim(owner: &str, handlers: &[&str], now: Timestamp, limit: usize) -> Claim {
    Claim {
        owner: owner.to_owned(),
        handlers: handlers.iter().map(|h| (*h).to_owned()).collect(),
        now,
        lease: Duration::from_secs(30),
        limit,
    }
}

/// A failure that makes the request dead.
fn dead(error: &str) -> Finish {
    Finish::Failed {
        error: error.to_owned(),
        retry_at: None,
    }
}

/// Stores `requests` at time 0 and claims up to `limit` of them for
/// handler `mail` as executor `a`.
async fn enqueue_and_claim(
    store: &dyn HandlerStore,
    requests: &[NewRequest],
    limit: usize,
) -> Result<Vec<HandlerRequest>, String> {
    store
        .enqueue_requests(&[], requests, at(0))
        .await
        .step("enqueue")?;
    store
        .claim_requests(&claim("a", &["mail"], at(0), limit))
        .await
        .step("claim")
}

fn positions(requests: &[HandlerRequest]) -> Vec<u64> {
    requests.iter().map(|r| r.position.0).collect()
}

async fn one(
    store: &dyn HandlerStore,
    id: RequestId,
    now: Timestamp,
) -> Result<HandlerRequest, String> {
    let listed = store
        .list_requests(&RequestFilter::all().id(id), now)
        .await
        .step("list one request")?;
    listed
        .into_iter()
        .next()
        .ok_or_else(|| format!("request {id} is not listed"))
}

/// Guarantee 1: requests and checkpoints are stored together, a new
/// request pending and due at once, and a pair is never stored twice.
pub(crate) async fn each_pair_is_stored_once_with_its_checkpoint(
    store: Arc<dyn HandlerStore>,
    _: Options,
) -> CaseResult {
    let first = [request("mail", 1), request("hook", 1), request("mail", 2)];
    let saved = checkpoint(2, 1);
    store
        .enqueue_requests(&[("handler:mail".into(), saved)], &first, at(0))
        .await
        .step("enqueue")?;
    // The same pairs again (a retry, or a racing processor), and one more.
    let mut again = first.to_vec();
    again.push(request("mail", 3));
    store
        .enqueue_requests(&[("handler:mail".into(), checkpoint(1, 1))], &again, at(1))
        .await
        .step("enqueue again")?;
    let listed = store
        .list_requests(&RequestFilter::all(), at(2))
        .await
        .step("list")?;
    ensure!(
        listed.len() == 4,
        "expected 4 requests (3, then 1 new), found {}: {listed:?}",
        listed.len()
    );
    let pairs: HashSet<_> = listed
        .iter()
        .map(|r| (r.handler.clone(), r.event_id))
        .collect();
    ensure!(pairs.len() == 4, "a pair was stored twice: {listed:?}");
    let new = &listed[0];
    ensure!(
        new.status == RequestStatus::Pending
            && new.attempts == 0
            && new.failures == 0
            && new.errors.is_empty()
            && new.due_at == at(0)
            && new.created_at == at(0)
            && new.event_type.as_str() == "Opened"
            && new.stream_id.as_str() == "account-1",
        "a new request is not pending and due when stored: {new:?}"
    );
    let loaded = store.load_checkpoint("handler:mail").await.step("load")?;
    ensure!(
        loaded == Some(saved),
        "the checkpoint moved back or was not saved: {loaded:?}, saved {saved:?}"
    );
    Ok(())
}

/// Guarantee 2: due requests are claimed highest priority first, then by
/// position, up to the limit, only of the handlers asked for, and never
/// before they are due.
pub(crate) async fn claims_take_priority_then_position(
    store: Arc<dyn HandlerStore>,
    _: Options,
) -> CaseResult {
    let mut requests = vec![request("mail", 1), request("mail", 2), request("mail", 3)];
    requests[2].priority = 90;
    requests.push(request("other", 4));
    store
        .enqueue_requests(&[], &requests, at(0))
        .await
        .step("enqueue")?;
    let early = store
        .claim_requests(&claim("a", &["mail"], at(-1), 10))
        .await
        .step("claim before due")?;
    ensure!(early.is_empty(), "claimed requests not yet due: {early:?}");
    let claimed = store
        .claim_requests(&claim("a", &["mail"], at(1), 2))
        .await
        .step("claim")?;
    ensure!(
        positions(&claimed) == [3, 1],
        "expected positions [3, 1] (priority 90, then the oldest), claimed {:?}",
        positions(&claimed)
    );
    ensure!(
        claimed
            .iter()
            .all(|r| r.status == RequestStatus::Running && r.attempts == 1),
        "claimed requests are not running on their first attempt: {claimed:?}"
    );
    let rest = store
        .claim_requests(&claim("b", &["mail"], at(1), 10))
        .await
        .step("claim the rest")?;
    ensure!(
        positions(&rest) == [2],
        "a second executor should get only position 2, got {:?}",
        positions(&rest)
    );
    Ok(())
}

/// Guarantee 2: executors claiming at once never both get one request.
pub(crate) async fn racing_claims_never_share_a_request(
    store: Arc<dyn HandlerStore>,
    _: Options,
) -> CaseResult {
    let requests: Vec<_> = (1..=60).map(|p| request("mail", p)).collect();
    store
        .enqueue_requests(&[], &requests, at(0))
        .await
        .step("enqueue")?;
    let results = race(6, |i| {
        let store = store.clone();
        async move {
            let mut mine = Vec::new();
            loop {
                let got = store
                    .claim_requests(&claim(&format!("executor-{i}"), &["mail"], at(1), 3))
                    .await?;
                if got.is_empty() {
                    return Ok::<_, crate::BackendError>(mine);
                }
                mine.extend(got.into_iter().map(|r| r.id));
            }
        }
    })
    .await?;
    let mut seen = HashSet::new();
    for result in results {
        for id in result.step("claim")? {
            ensure!(seen.insert(id), "request {id} was claimed twice");
        }
    }
    ensure!(seen.len() == 60, "claimed {} of 60 requests", seen.len());
    Ok(())
}

/// Guarantee 2: a claim that expired unanswered lets another executor
/// claim the request, with a failure recorded for the lost attempt.
pub(crate) async fn expired_claim_is_claimed_again_with_a_failure(
    store: Arc<dyn HandlerStore>,
    _: Options,
) -> CaseResult {
    store
        .enqueue_requests(&[], &[request("mail", 1)], at(0))
        .await
        .step("enqueue")?;
    let first = store
        .claim_requests(&claim("dead-executor", &["mail"], at(0), 1))
        .await
        .step("claim")?;
    ensure!(first.len() == 1, "expected one claim, got {first:?}");
    let held = store
        .claim_requests(&claim("b", &["mail"], at(29), 1))
        .await
        .step("claim while held")?;
    ensure!(held.is_empty(), "a held claim was claimed again: {held:?}");
    let again = store
        .claim_requests(&claim("b", &["mail"], at(31), 1))
        .await
        .step("claim after expiry")?;
    let [request] = again.as_slice() else {
        return Err(format!(
            "the expired claim was not claimed again: {again:?}"
        ));
    };
    ensure!(
        request.attempts == 2
            && request.failures == 1
            && request.errors.len() == 1
            && request.errors[0].attempt == 1
            && request.errors[0].error == CLAIM_EXPIRED,
        "the lost attempt was not recorded as a failure: {request:?}"
    );
    let late = store
        .finish_request(request.id, "dead-executor", Finish::Done, at(32))
        .await
        .step("finish by the old owner")?;
    ensure!(
        !late,
        "the executor whose claim expired could still finish it"
    );
    Ok(())
}

/// Guarantee 3: renewing keeps a claim past its lease; another owner's
/// renewal changes nothing.
pub(crate) async fn renewed_claim_holds_past_its_lease(
    store: Arc<dyn HandlerStore>,
    _: Options,
) -> CaseResult {
    store
        .enqueue_requests(&[], &[request("mail", 1)], at(0))
        .await
        .step("enqueue")?;
    let claimed = store
        .claim_requests(&claim("a", &["mail"], at(0), 1))
        .await
        .step("claim")?;
    let ids: Vec<_> = claimed.iter().map(|r| r.id).collect();
    store.renew_claims("a", &ids, at(100)).await.step("renew")?;
    store
        .renew_claims("b", &ids, at(1))
        .await
        .step("renew by another")?;
    let stolen = store
        .claim_requests(&claim("b", &["mail"], at(60), 1))
        .await
        .step("claim")?;
    ensure!(stolen.is_empty(), "a renewed claim was taken: {stolen:?}");
    let status = one(&*store, ids[0], at(60)).await?.status;
    ensure!(
        status == RequestStatus::Running,
        "listed as {status}, not running"
    );
    Ok(())
}

/// Guarantee 4: done, failed with a retry, failed for good, released, and
/// an answer from an executor that holds no claim.
pub(crate) async fn finishing_records_each_outcome(
    store: Arc<dyn HandlerStore>,
    _: Options,
) -> CaseResult {
    let requests: Vec<_> = (1..=4).map(|p| request("mail", p)).collect();
    let claimed = enqueue_and_claim(&*store, &requests, 4).await?;
    let id = |i: usize| claimed[i].id;
    ensure!(claimed.len() == 4, "expected 4 claims, got {claimed:?}");
    let stranger = store
        .finish_request(id(0), "b", Finish::Done, at(1))
        .await
        .step("finish by a stranger")?;
    ensure!(
        !stranger,
        "an executor without the claim finished the request"
    );
    let retry = Finish::Failed {
        error: "smtp: 421 \"try again\"".into(),
        retry_at: Some(at(10)),
    };
    for (i, finish) in [
        Finish::Done,
        retry,
        dead("webhook: 410 gone"),
        Finish::Released,
    ]
    .into_iter()
    .enumerate()
    {
        let held = store
            .finish_request(id(i), "a", finish, at(1))
            .await
            .step("finish")?;
        ensure!(held, "the owner could not finish request {}", id(i));
    }
    let twice = store
        .finish_request(id(0), "a", Finish::Done, at(2))
        .await
        .step("finish twice")?;
    ensure!(!twice, "a finished request was finished again");
    let (done, retried, died, released) = (
        one(&*store, id(0), at(2)).await?,
        one(&*store, id(1), at(2)).await?,
        one(&*store, id(2), at(2)).await?,
        one(&*store, id(3), at(2)).await?,
    );
    ensure!(
        done.status == RequestStatus::Done,
        "done is {}",
        done.status
    );
    ensure!(
        retried.status == RequestStatus::Pending
            && retried.due_at == at(10)
            && retried.failures == 1
            && retried.errors.len() == 1
            && retried.errors[0].error == "smtp: 421 \"try again\""
            && retried.errors[0].attempt == 1
            && retried.errors[0].failed_at == at(1),
        "the failure was not recorded with its retry: {retried:?}"
    );
    ensure!(
        died.status == RequestStatus::Dead && died.failures == 1,
        "the permanent failure is not dead: {died:?}"
    );
    ensure!(
        released.status == RequestStatus::Pending
            && released.attempts == 0
            && released.failures == 0
            && released.due_at == at(1),
        "the released request is not pending, due, with its attempt uncounted: {released:?}"
    );
    let due = store
        .claim_requests(&claim("a", &["mail"], at(5), 4))
        .await
        .step("claim at 5")?;
    ensure!(
        positions(&due) == [4],
        "at 5 only the released request is due, claimed {:?}",
        positions(&due)
    );
    let later = store
        .claim_requests(&claim("a", &["mail"], at(10), 4))
        .await
        .step("claim at 10")?;
    ensure!(
        positions(&later) == [2] && later[0].attempts == 2,
        "at 10 the failed request is due on its second attempt: {later:?}"
    );
    Ok(())
}

/// Guarantee 2: with an ordering key, a request waits for the pending ones
/// of its key before it; other keys and requests without a key go on, and
/// a dead request no longer holds its key.
pub(crate) async fn ordering_key_holds_only_its_own_key(
    store: Arc<dyn HandlerStore>,
    _: Options,
) -> CaseResult {
    let requests = [
        keyed("mail", 1, "a"),
        keyed("mail", 2, "a"),
        keyed("mail", 3, "b"),
        request("mail", 4),
        keyed("hook", 5, "a"),
    ];
    store
        .enqueue_requests(&[], &requests, at(0))
        .await
        .step("enqueue")?;
    let first = store
        .claim_requests(&claim("x", &["mail", "hook"], at(0), 10))
        .await
        .step("claim")?;
    ensure!(
        positions(&first) == [1, 3, 4, 5],
        "expected [1, 3, 4, 5] (2 waits for 1 of its key), claimed {:?}",
        positions(&first)
    );
    for other in &first[1..] {
        store
            .finish_request(other.id, "x", Finish::Done, at(1))
            .await
            .step("finish")?;
    }
    // The first of key "a" fails and is due later: the second still waits.
    let failed = Finish::Failed {
        error: "poison".into(),
        retry_at: Some(at(100)),
    };
    store
        .finish_request(first[0].id, "x", failed, at(1))
        .await
        .step("fail")?;
    let waiting = store
        .claim_requests(&claim("x", &["mail"], at(2), 10))
        .await
        .step("claim while the key is held")?;
    ensure!(
        waiting.is_empty(),
        "a request ran while an earlier one of its key was pending: {waiting:?}"
    );
    let again = store
        .claim_requests(&claim("x", &["mail"], at(100), 10))
        .await
        .step("claim the retry")?;
    ensure!(positions(&again) == [1], "claimed {:?}", positions(&again));
    store
        .finish_request(again[0].id, "x", dead("poison"), at(101))
        .await
        .step("kill")?;
    let next = store
        .claim_requests(&claim("x", &["mail"], at(102), 10))
        .await
        .step("claim after the death")?;
    ensure!(
        positions(&next) == [2],
        "the dead request still holds its key: claimed {:?}",
        positions(&next)
    );
    Ok(())
}

/// Guarantee 5: listing filters by status, handler, event type, time and
/// number, and pages.
pub(crate) async fn listing_filters_and_pages(
    store: Arc<dyn HandlerStore>,
    _: Options,
) -> CaseResult {
    let mut requests: Vec<_> = (1..=5).map(|p| request("mail", p)).collect();
    requests[4].event_type = EventType::new("Closed").expect("valid event type");
    requests.push(request("hook", 6));
    let claimed = enqueue_and_claim(&*store, &requests, 2).await?;
    for (i, r) in claimed.iter().enumerate() {
        let when = at(10 * (i64::try_from(i).expect("small") + 1));
        store
            .finish_request(r.id, "a", dead("gone"), when)
            .await
            .step("kill")?;
    }
    let list = |filter: RequestFilter| {
        let store = store.clone();
        async move {
            store
                .list_requests(&filter, at(50))
                .await
                .map(|r| positions(&r))
                .step("list")
        }
    };
    let checks = [
        (RequestFilter::dead(), vec![1, 2]),
        (RequestFilter::dead().since(at(20)), vec![2]),
        (RequestFilter::dead().before(at(20)), vec![1]),
        (RequestFilter::all().handler("hook"), vec![6]),
        (RequestFilter::all().event_type("Closed"), vec![5]),
        (
            RequestFilter::all().status(RequestStatus::Pending),
            vec![3, 4, 5, 6],
        ),
        (RequestFilter::all().limit(2), vec![1, 2]),
        (
            RequestFilter::all().after(claimed[1].id).limit(2),
            vec![3, 4],
        ),
    ];
    for (filter, expected) in checks {
        let found = list(filter.clone()).await?;
        ensure!(
            found == expected,
            "{filter:?} listed {found:?}, expected {expected:?}"
        );
    }
    Ok(())
}

/// Guarantees 6 and 7: dead requests are requeued (one, or all a filter
/// matches) with their history kept, or discarded with a reason; neither
/// touches a request that is not dead.
pub(crate) async fn dead_requests_are_requeued_or_discarded(
    store: Arc<dyn HandlerStore>,
    _: Options,
) -> CaseResult {
    let requests: Vec<_> = (1..=4).map(|p| request("mail", p)).collect();
    let claimed = enqueue_and_claim(&*store, &requests, 3).await?;
    for r in &claimed {
        store
            .finish_request(r.id, "a", dead("gone"), at(1))
            .await
            .step("kill")?;
    }
    let pending_id = store
        .list_requests(&RequestFilter::all().status(RequestStatus::Pending), at(2))
        .await
        .step("list pending")?[0]
        .id;
    let one_back = store
        .requeue_requests(&RequestFilter::all().id(claimed[0].id), at(2))
        .await
        .step("requeue one")?;
    ensure!(one_back == 1, "requeued {one_back}, expected 1");
    let requeued = one(&*store, claimed[0].id, at(2)).await?;
    ensure!(
        requeued.status == RequestStatus::Pending
            && requeued.failures == 0
            && requeued.errors.len() == 1
            && requeued.due_at == at(2),
        "requeued without its history, or not due: {requeued:?}"
    );
    let not_dead = store
        .requeue_requests(&RequestFilter::all().id(pending_id), at(2))
        .await
        .step("requeue a pending request")?;
    ensure!(not_dead == 0, "a pending request was requeued");
    let discarded = store
        .discard_request(claimed[1].id, "customer deleted", at(3))
        .await
        .step("discard")?;
    ensure!(discarded, "a dead request could not be discarded");
    let gone = one(&*store, claimed[1].id, at(3)).await?;
    ensure!(
        gone.status == RequestStatus::Discarded
            && gone.discard_reason.as_deref() == Some("customer deleted"),
        "discarded without its reason: {gone:?}"
    );
    let refused = store
        .discard_request(pending_id, "no", at(3))
        .await
        .step("discard a pending request")?;
    ensure!(!refused, "a pending request was discarded");
    let rest = store
        .requeue_requests(&RequestFilter::all(), at(4))
        .await
        .step("requeue all")?;
    ensure!(
        rest == 1,
        "requeued {rest} in bulk; only one was still dead"
    );
    let counts = store.request_counts(at(4)).await.step("counts")?;
    ensure!(
        (
            counts.pending,
            counts.running,
            counts.done,
            counts.dead,
            counts.discarded
        ) == (3, 0, 0, 0, 1),
        "counts are {counts:?}"
    );
    Ok(())
}

/// Guarantee 8: counts follow each request's status, a claim counting as
/// running only until it expires.
pub(crate) async fn counts_follow_each_status(
    store: Arc<dyn HandlerStore>,
    _: Options,
) -> CaseResult {
    let requests: Vec<_> = (1..=3).map(|p| request("mail", p)).collect();
    let claimed = enqueue_and_claim(&*store, &requests, 2).await?;
    store
        .finish_request(claimed[0].id, "a", Finish::Done, at(1))
        .await
        .step("finish")?;
    let now = store.request_counts(at(1)).await.step("counts")?;
    ensure!(
        (now.pending, now.running, now.done) == (1, 1, 1),
        "counts at 1: {now:?}"
    );
    let unsettled = store.unsettled_requests().await.step("unsettled")?;
    ensure!(
        unsettled == 2,
        "{unsettled} unsettled requests, expected 2 (one pending, one running)"
    );
    let expired = store.request_counts(at(31)).await.step("counts")?;
    ensure!(
        (expired.pending, expired.running, expired.done) == (2, 0, 1),
        "an expired claim still counts as running: {expired:?}"
    );
    Ok(())
}
