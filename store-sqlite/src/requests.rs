//! Durable handlers' requests in SQLite: the writes (through the writer,
//! each in a savepoint of its group's transaction) and the reads (on the
//! read pool).
//!
//! A request's status column holds pending, done, dead or discarded; a
//! pending request whose claim has not expired is running, which depends
//! on the time of the question and so is worked out as it is asked.

use annals_core::store::{request_status_code, request_status_from_code};
use annals_core::{
    later, AttemptError, BackendError, BackendErrorKind, Claim, EventId, EventType, Finish,
    HandlerRequest, NewRequest, Position, RequestCounts, RequestFilter, RequestId, RequestStatus,
    StreamId, Timestamp, CLAIM_EXPIRED,
};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::error::backend;

/// The stored number of each status.
fn code(status: RequestStatus) -> i64 {
    i64::from(request_status_code(status))
}

fn sql_int(value: u64, what: &str) -> Result<i64, BackendError> {
    i64::try_from(value).map_err(|_| {
        BackendError::new(
            BackendErrorKind::Other,
            format!("{what} {value} is past the largest SQLite can store"),
        )
    })
}

const INSERT: &str = "INSERT INTO handler_requests
    (handler, event_id, position, event_type, stream_id, priority, ordering_key,
     status, attempts, failures, created_at, due_at, updated_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, 0, 0, ?8, ?8, ?8)
ON CONFLICT (handler, event_id) DO NOTHING";

pub(crate) fn enqueue(
    conn: &Connection,
    requests: &[NewRequest],
    now: Timestamp,
) -> Result<(), BackendError> {
    let failed = |e| backend("storing handler requests", e);
    let mut insert = conn.prepare_cached(INSERT).map_err(failed)?;
    for request in requests {
        insert
            .execute(params![
                request.handler,
                request.event_id.to_string(),
                sql_int(request.position.0, "position")?,
                request.event_type.as_str(),
                request.stream_id.as_str(),
                request.priority,
                request.ordering_key,
                now.as_unix_micros(),
            ])
            .map_err(failed)?;
    }
    Ok(())
}

/// Due pending requests of the handlers, unclaimed or with an expired
/// claim, not held back by an earlier request of their key, in claim order.
/// The indexes are named: left to itself, the planner picks the status
/// index and sorts every pending request at each claim.
const DUE: &str = "SELECT id, claimed_by FROM handler_requests AS r INDEXED BY handler_requests_due
WHERE status = 0 AND due_at <= ?1 AND (claim_expires IS NULL OR claim_expires <= ?1)
  AND handler IN (SELECT value FROM json_each(?2))
  AND (ordering_key IS NULL OR NOT EXISTS (
      SELECT 1 FROM handler_requests AS e INDEXED BY handler_requests_keys
      WHERE e.status = 0 AND e.handler = r.handler AND e.ordering_key = r.ordering_key
        AND (e.position < r.position OR (e.position = r.position AND e.id < r.id))))
ORDER BY priority DESC, position, id
LIMIT ?3";

const TAKE: &str = "UPDATE handler_requests
SET attempts = attempts + 1, failures = failures + ?2, claimed_by = ?3, claim_expires = ?4,
    updated_at = ?5
WHERE id = ?1";

const RECORD_ERROR: &str = "INSERT INTO handler_request_errors (request, attempt, error, failed_at)
SELECT id, attempts, ?2, ?3 FROM handler_requests WHERE id = ?1";

pub(crate) fn claim_requests(
    conn: &Connection,
    claim: &Claim,
) -> Result<Vec<HandlerRequest>, BackendError> {
    let failed = |e| backend("claiming handler requests", e);
    let now = claim.now.as_unix_micros();
    let handlers = serde_json::to_string(&claim.handlers).map_err(|e| {
        BackendError::new(BackendErrorKind::Other, format!("listing handlers: {e}"))
    })?;
    let limit = i64::try_from(claim.limit).unwrap_or(i64::MAX);
    let due: Vec<(i64, bool)> = {
        let mut select = conn.prepare_cached(DUE).map_err(failed)?;
        let rows = select
            .query_map(params![now, handlers, limit], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, Option<String>>(1)?.is_some(),
                ))
            })
            .map_err(failed)?;
        rows.collect::<Result<_, _>>().map_err(failed)?
    };
    let until = later(claim.now, claim.lease).as_unix_micros();
    let mut take = conn.prepare_cached(TAKE).map_err(failed)?;
    let mut record = conn.prepare_cached(RECORD_ERROR).map_err(failed)?;
    for (id, expired) in &due {
        if *expired {
            // The last attempt's claim expired unanswered: its failure.
            record
                .execute(params![id, CLAIM_EXPIRED, now])
                .map_err(failed)?;
        }
        take.execute(params![id, i64::from(*expired), claim.owner, until, now])
            .map_err(failed)?;
    }
    let ids: Vec<i64> = due.iter().map(|(id, _)| *id).collect();
    let mut claimed = select_requests(conn, &ids, claim.now)?;
    // In claim order, as selected.
    claimed.sort_by_key(|r| {
        ids.iter()
            .position(|id| u64::try_from(*id).ok() == Some(r.id.0))
    });
    Ok(claimed)
}

pub(crate) fn renew(
    conn: &Connection,
    owner: &str,
    ids: &[RequestId],
    until: Timestamp,
) -> Result<(), BackendError> {
    let failed = |e| backend("renewing claims", e);
    let mut update = conn
        .prepare_cached(
            "UPDATE handler_requests SET claim_expires = ?3
             WHERE id = ?1 AND status = 0 AND claimed_by = ?2",
        )
        .map_err(failed)?;
    for id in ids {
        update
            .execute(params![
                sql_int(id.0, "request id")?,
                owner,
                until.as_unix_micros()
            ])
            .map_err(failed)?;
    }
    Ok(())
}

pub(crate) fn finish_request(
    conn: &Connection,
    id: RequestId,
    owner: &str,
    finish: &Finish,
    now: Timestamp,
) -> Result<bool, BackendError> {
    let failed = |e| backend("finishing a handler request", e);
    let id = sql_int(id.0, "request id")?;
    let now = now.as_unix_micros();
    let held: Option<i64> = conn
        .prepare_cached(
            "SELECT id FROM handler_requests WHERE id = ?1 AND status = 0 AND claimed_by = ?2",
        )
        .and_then(|mut s| s.query_row(params![id, owner], |r| r.get(0)).optional())
        .map_err(failed)?;
    if held.is_none() {
        return Ok(false);
    }
    let (status, failures, due, attempts_back, error) = match finish {
        Finish::Done => (code(RequestStatus::Done), 0, None, 0, None),
        Finish::Failed { error, retry_at } => match retry_at {
            Some(at) => (
                code(RequestStatus::Pending),
                1,
                Some(at.as_unix_micros()),
                0,
                Some(error),
            ),
            None => (code(RequestStatus::Dead), 1, None, 0, Some(error)),
        },
        Finish::Released => (code(RequestStatus::Pending), 0, Some(now), 1, None),
        #[allow(unreachable_patterns)]
        _ => {
            return Err(BackendError::new(
                BackendErrorKind::Other,
                "an outcome this store does not know",
            ))
        }
    };
    if let Some(error) = error {
        conn.prepare_cached(RECORD_ERROR)
            .and_then(|mut s| s.execute(params![id, error, now]))
            .map_err(failed)?;
    }
    conn.prepare_cached(
        "UPDATE handler_requests
         SET status = ?2, failures = failures + ?3, due_at = coalesce(?4, due_at),
             attempts = attempts - ?5, claimed_by = NULL, claim_expires = NULL, updated_at = ?6
         WHERE id = ?1",
    )
    .and_then(|mut s| s.execute(params![id, status, failures, due, attempts_back, now]))
    .map_err(failed)?;
    Ok(true)
}

/// The filter's conditions on the shown status (`shown`, at `?1`) and the
/// other columns, with their parameters from `?2` on.
const MATCHES: &str = "(?2 IS NULL OR id = ?2)
  AND (?3 IS NULL OR (CASE WHEN status = 0 AND claim_expires > ?1 THEN 1 ELSE status END) = ?3)
  AND (?4 IS NULL OR handler = ?4)
  AND (?5 IS NULL OR event_type = ?5)
  AND (?6 IS NULL OR updated_at >= ?6)
  AND (?7 IS NULL OR updated_at < ?7)
  AND (?8 IS NULL OR id > ?8)";

fn filter_params(filter: &RequestFilter, now: Timestamp) -> Result<[Value; 9], BackendError> {
    let id = |id: Option<RequestId>| -> Result<Value, BackendError> {
        Ok(match id {
            Some(id) => Value::Integer(sql_int(id.0, "request id")?),
            None => Value::Null,
        })
    };
    let text = |t: &Option<String>| t.clone().map_or(Value::Null, Value::Text);
    let time = |t: Option<Timestamp>| t.map_or(Value::Null, |t| Value::Integer(t.as_unix_micros()));
    Ok([
        Value::Integer(now.as_unix_micros()),
        id(filter.id)?,
        filter
            .status
            .map_or(Value::Null, |s| Value::Integer(code(s))),
        text(&filter.handler),
        text(&filter.event_type),
        time(filter.since),
        time(filter.before),
        id(filter.after)?,
        Value::Integer(
            filter
                .limit
                .map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX)),
        ),
    ])
}

pub(crate) fn requeue(
    conn: &Connection,
    filter: &RequestFilter,
    now: Timestamp,
) -> Result<u64, BackendError> {
    let dead = code(RequestStatus::Dead);
    let sql = format!(
        "UPDATE handler_requests
         SET status = 0, failures = 0, due_at = ?1, updated_at = ?1
         WHERE id IN (SELECT id FROM handler_requests
                      WHERE status = {dead} AND {MATCHES} ORDER BY id LIMIT ?9)"
    );
    let params = filter_params(filter, now)?;
    let changed = conn
        .prepare_cached(&sql)
        .and_then(|mut s| s.execute(rusqlite::params_from_iter(params)))
        .map_err(|e| backend("requeuing dead requests", e))?;
    Ok(changed as u64)
}

pub(crate) fn discard(
    conn: &Connection,
    id: RequestId,
    reason: &str,
    now: Timestamp,
) -> Result<bool, BackendError> {
    let id = sql_int(id.0, "request id")?;
    let changed = conn
        .prepare_cached(
            "UPDATE handler_requests SET status = 4, discard_reason = ?2, updated_at = ?3
             WHERE id = ?1 AND status = 3",
        )
        .and_then(|mut s| s.execute(params![id, reason, now.as_unix_micros()]))
        .map_err(|e| backend("discarding a dead request", e))?;
    Ok(changed == 1)
}

const COLUMNS: &str =
    "id, handler, event_id, position, event_type, stream_id, priority, ordering_key,
    CASE WHEN status = 0 AND claim_expires > ?1 THEN 1 ELSE status END,
    attempts, failures, created_at, due_at, updated_at, discard_reason";

/// The requests the filter matches, by number.
pub(crate) fn list_requests(
    conn: &Connection,
    filter: &RequestFilter,
    now: Timestamp,
) -> Result<Vec<HandlerRequest>, BackendError> {
    let sql =
        format!("SELECT {COLUMNS} FROM handler_requests WHERE {MATCHES} ORDER BY id LIMIT ?9");
    let params = rusqlite::params_from_iter(filter_params(filter, now)?);
    query_requests(conn, &sql, params)
}

/// The requests numbered `ids`, with their errors, as they stand at `now`.
fn select_requests(
    conn: &Connection,
    ids: &[i64],
    now: Timestamp,
) -> Result<Vec<HandlerRequest>, BackendError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM handler_requests WHERE id IN (SELECT value FROM json_each(?2))"
    );
    let list = serde_json::to_string(ids).map_err(|e| {
        BackendError::new(BackendErrorKind::Other, format!("listing request ids: {e}"))
    })?;
    query_requests(conn, &sql, params![now.as_unix_micros(), list])
}

/// Runs a query of requests' `COLUMNS` and fills in their errors.
fn query_requests(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<HandlerRequest>, BackendError> {
    let failed = |e| backend("reading handler requests", e);
    let mut select = conn.prepare_cached(sql).map_err(failed)?;
    let mut rows = select.query(params).map_err(failed)?;
    let mut requests = Vec::new();
    while let Some(row) = rows.next().map_err(failed)? {
        requests.push(request_from_row(row)?);
    }
    add_errors(conn, &mut requests)?;
    Ok(requests)
}

/// Fills in each request's errors, oldest first. Only requests that
/// failed are looked up.
fn add_errors(conn: &Connection, requests: &mut [HandlerRequest]) -> Result<(), BackendError> {
    let failed = |e| backend("reading request errors", e);
    let mut select = conn
        .prepare_cached(
            "SELECT attempt, error, failed_at FROM handler_request_errors
             WHERE request = ?1 ORDER BY rowid",
        )
        .map_err(failed)?;
    for request in requests.iter_mut() {
        // Every failure follows an attempt, and a first attempt that has
        // not failed (running, or done) has none before it; a requeued
        // request has failures back at 0 but errors kept.
        let first_clean = request.attempts == 1
            && request.failures == 0
            && matches!(request.status, RequestStatus::Running | RequestStatus::Done);
        if request.attempts == 0 || first_clean {
            continue;
        }
        let id = sql_int(request.id.0, "request id")?;
        let mut rows = select.query([id]).map_err(failed)?;
        while let Some(row) = rows.next().map_err(failed)? {
            let attempt: i64 = row.get(0).map_err(failed)?;
            request.errors.push(AttemptError {
                attempt: u32::try_from(attempt).map_err(|_| corrupt(request.id, "attempt"))?,
                error: row.get(1).map_err(failed)?,
                failed_at: Timestamp::from_unix_micros(row.get(2).map_err(failed)?),
            });
        }
    }
    Ok(())
}

fn corrupt(id: RequestId, what: &str) -> BackendError {
    BackendError::new(
        BackendErrorKind::Corrupt,
        format!("handler request {id} is unreadable: its {what} does not fit"),
    )
}

fn request_from_row(row: &Row<'_>) -> Result<HandlerRequest, BackendError> {
    let id = row
        .get::<_, i64>(0)
        .ok()
        .and_then(|id| u64::try_from(id).ok())
        .map(RequestId)
        .ok_or_else(|| corrupt(RequestId(0), "id"))?;
    let bad = |what: &str| corrupt(id, what);
    let text = |i: usize, what: &str| -> Result<String, BackendError> {
        row.get::<_, String>(i).map_err(|_| bad(what))
    };
    let int = |i: usize, what: &str| -> Result<i64, BackendError> {
        match row.get_ref(i) {
            Ok(ValueRef::Integer(n)) => Ok(n),
            _ => Err(bad(what)),
        }
    };
    let count = |i: usize, what: &str| u32::try_from(int(i, what)?).map_err(|_| bad(what));
    let status = request_status_from_code(int(8, "status")?).ok_or_else(|| bad("status"))?;
    Ok(HandlerRequest {
        id,
        handler: text(1, "handler")?,
        event_id: uuid::Uuid::parse_str(&text(2, "event id")?)
            .ok()
            .and_then(|u| EventId::from_uuid(u).ok())
            .ok_or_else(|| bad("event id"))?,
        position: Position(u64::try_from(int(3, "position")?).map_err(|_| bad("position"))?),
        event_type: EventType::new(text(4, "event type")?).map_err(|_| bad("event type"))?,
        stream_id: StreamId::new(text(5, "stream id")?).map_err(|_| bad("stream id"))?,
        priority: i32::try_from(int(6, "priority")?).map_err(|_| bad("priority"))?,
        ordering_key: row.get(7).map_err(|_| bad("ordering key"))?,
        status,
        attempts: count(9, "attempts")?,
        failures: count(10, "failures")?,
        errors: Vec::new(),
        created_at: Timestamp::from_unix_micros(int(11, "created_at")?),
        due_at: Timestamp::from_unix_micros(int(12, "due_at")?),
        updated_at: Timestamp::from_unix_micros(int(13, "updated_at")?),
        discard_reason: row.get(14).map_err(|_| bad("discard reason"))?,
    })
}

/// How many requests stand where at `now`.
pub(crate) fn request_counts(
    conn: &Connection,
    now: Timestamp,
) -> Result<RequestCounts, BackendError> {
    let failed = |e| backend("counting handler requests", e);
    let mut select = conn
        .prepare_cached(
            "SELECT CASE WHEN status = 0 AND claim_expires > ?1 THEN 1 ELSE status END AS shown,
                    count(*)
             FROM handler_requests GROUP BY shown",
        )
        .map_err(failed)?;
    let mut rows = select.query([now.as_unix_micros()]).map_err(failed)?;
    let mut counts = RequestCounts::default();
    while let Some(row) = rows.next().map_err(failed)? {
        let n = u64::try_from(row.get::<_, i64>(1).map_err(failed)?).unwrap_or(0);
        match request_status_from_code(row.get::<_, i64>(0).map_err(failed)?) {
            Some(RequestStatus::Pending) => counts.pending = n,
            Some(RequestStatus::Running) => counts.running = n,
            Some(RequestStatus::Done) => counts.done = n,
            Some(RequestStatus::Dead) => counts.dead = n,
            _ => counts.discarded += n,
        }
    }
    Ok(counts)
}

/// How many requests are pending or running: a walk of the partial index
/// of pending requests, which holds only those.
pub(crate) fn unsettled_requests(conn: &Connection) -> Result<u64, BackendError> {
    let count: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM handler_requests INDEXED BY handler_requests_due WHERE status = 0",
        )
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(|e| backend("counting unsettled requests", e))?;
    Ok(u64::try_from(count).unwrap_or(0))
}
