//! Durable handlers' requests in PostgreSQL ([`HandlerStore`]).
//!
//! Executors in many processes claim from one table. A claim is one
//! statement: it picks the due requests with `FOR UPDATE SKIP LOCKED`, so
//! that two executors claiming at once never take the same request nor
//! wait for each other, records the failure of an attempt whose claim
//! expired, and marks the rest claimed. A request of an ordering key is due
//! only when no earlier pending request of its key remains (a running one
//! is pending with a live claim), so a key's requests run one at a time in
//! position order, whoever claims them.
//!
//! A request's status column holds pending, done, dead or discarded; a
//! pending request whose claim has not expired is running, which depends
//! on the time of the question and so is worked out as it is asked.

use annals_core::store::{request_status_code, request_status_from_code};
use annals_core::{
    later, AttemptError, BackendError, BackendErrorKind, Checkpoint, Claim, EventId, EventType,
    Finish, HandlerRequest, HandlerStore, NewRequest, Position, RequestCounts, RequestFilter,
    RequestId, RequestStatus, StreamId, Timestamp, CLAIM_EXPIRED,
};
use async_trait::async_trait;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::error::{backend, corrupt};
use crate::store::{stored_position, unstorable, PostgresStore};

/// The stored number of each status.
fn code(status: RequestStatus) -> i16 {
    request_status_code(status)
}

fn sql_id(id: RequestId) -> Result<i64, BackendError> {
    i64::try_from(id.0).map_err(|_| {
        BackendError::new(
            BackendErrorKind::Other,
            format!("request id {id} is past the largest PostgreSQL can store"),
        )
    })
}

type Params<'a> = Vec<&'a (dyn ToSql + Sync)>;

/// The shown status: a pending request with a live claim is running.
const SHOWN: &str = "CASE WHEN status = 0 AND claim_expires > $1 THEN 1::smallint ELSE status END";

const COLUMNS: &str = "id, handler, event_id, position, event_type, stream_id, priority, \
     ordering_key, CASE WHEN status = 0 AND claim_expires > $1 THEN 1::smallint ELSE status END, \
     attempts, failures, created_at, due_at, updated_at, discard_reason";

/// The filter's conditions, with `$1` the time of the question and its
/// parameters from `$2` on (`$9` is the limit, NULL for none).
const MATCHES: &str = "($2::bigint IS NULL OR id = $2)
  AND ($3::smallint IS NULL OR (CASE WHEN status = 0 AND claim_expires > $1 THEN 1::smallint ELSE status END) = $3)
  AND ($4::text IS NULL OR handler = $4)
  AND ($5::text IS NULL OR event_type = $5)
  AND ($6::bigint IS NULL OR updated_at >= $6)
  AND ($7::bigint IS NULL OR updated_at < $7)
  AND ($8::bigint IS NULL OR id > $8)";

struct FilterParams {
    now: i64,
    id: Option<i64>,
    status: Option<i16>,
    handler: Option<String>,
    event_type: Option<String>,
    since: Option<i64>,
    before: Option<i64>,
    after: Option<i64>,
    limit: Option<i64>,
}

impl FilterParams {
    fn new(filter: &RequestFilter, now: Timestamp) -> Result<Self, BackendError> {
        Ok(FilterParams {
            now: now.as_unix_micros(),
            id: filter.id.map(sql_id).transpose()?,
            status: filter.status.map(code),
            handler: filter.handler.clone(),
            event_type: filter.event_type.clone(),
            since: filter.since.map(|t| t.as_unix_micros()),
            before: filter.before.map(|t| t.as_unix_micros()),
            after: filter.after.map(sql_id).transpose()?,
            limit: filter.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX)),
        })
    }

    fn params(&self) -> Params<'_> {
        vec![
            &self.now,
            &self.id,
            &self.status,
            &self.handler,
            &self.event_type,
            &self.since,
            &self.before,
            &self.after,
            &self.limit,
        ]
    }
}

impl PostgresStore {
    fn table(&self, name: &str) -> String {
        format!("{}.{name}", self.sql().schema)
    }

    /// The requests a query of [`COLUMNS`] returns, with their errors.
    async fn query_requests(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<HandlerRequest>, BackendError> {
        let rows = self.query("reading handler requests", sql, params).await?;
        let mut requests = rows
            .iter()
            .map(request_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        self.add_errors(&mut requests).await?;
        Ok(requests)
    }

    /// Fills in each request's errors, oldest first. Only requests that
    /// may have failed are looked up.
    async fn add_errors(&self, requests: &mut [HandlerRequest]) -> Result<(), BackendError> {
        // Every failure follows an attempt, and a first attempt that has
        // not failed (running, or done) has none before it; a requeued
        // request has failures back at 0 but errors kept.
        let may_have_failed = |r: &HandlerRequest| {
            let first_clean = r.attempts == 1
                && r.failures == 0
                && matches!(r.status, RequestStatus::Running | RequestStatus::Done);
            r.attempts > 0 && !first_clean
        };
        let ids = requests
            .iter()
            .filter(|r| may_have_failed(r))
            .map(|r| sql_id(r.id))
            .collect::<Result<Vec<i64>, _>>()?;
        if ids.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "SELECT request, attempt, error, failed_at FROM {} \
             WHERE request = ANY($1) ORDER BY request, seq",
            self.table("handler_request_errors")
        );
        let rows = self.query("reading request errors", &sql, &[&ids]).await?;
        for row in &rows {
            let bad = || corrupt("a handler request's error is unreadable");
            let request: i64 = row.try_get(0).map_err(|_| bad())?;
            let attempt: i32 = row.try_get(1).map_err(|_| bad())?;
            let error = AttemptError {
                attempt: u32::try_from(attempt).map_err(|_| bad())?,
                error: row.try_get(2).map_err(|_| bad())?,
                failed_at: Timestamp::from_unix_micros(row.try_get(3).map_err(|_| bad())?),
            };
            if let Some(owner) = requests
                .iter_mut()
                .find(|r| i64::try_from(r.id.0).ok() == Some(request))
            {
                owner.errors.push(error);
            }
        }
        Ok(())
    }
}

fn request_from_row(row: &Row) -> Result<HandlerRequest, BackendError> {
    let id = row
        .try_get::<_, i64>(0)
        .ok()
        .and_then(|id| u64::try_from(id).ok())
        .map(RequestId)
        .ok_or_else(|| corrupt("a handler request's id is unreadable"))?;
    let bad = |what: &str| {
        corrupt(format!(
            "handler request {id} is unreadable: its {what} does not fit"
        ))
    };
    let text = |i: usize, what: &str| row.try_get::<_, String>(i).map_err(|_| bad(what));
    let int = |i: usize, what: &str| row.try_get::<_, i64>(i).map_err(|_| bad(what));
    let count = |i: usize, what: &str| {
        row.try_get::<_, i32>(i)
            .ok()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| bad(what))
    };
    let status = request_status_from_code(i64::from(
        row.try_get::<_, i16>(8).map_err(|_| bad("status"))?,
    ))
    .ok_or_else(|| bad("status"))?;
    Ok(HandlerRequest {
        id,
        handler: text(1, "handler")?,
        event_id: row
            .try_get::<_, uuid::Uuid>(2)
            .ok()
            .and_then(|u| EventId::from_uuid(u).ok())
            .ok_or_else(|| bad("event id"))?,
        position: Position(u64::try_from(int(3, "position")?).map_err(|_| bad("position"))?),
        event_type: EventType::new(text(4, "event type")?).map_err(|_| bad("event type"))?,
        stream_id: StreamId::new(text(5, "stream id")?).map_err(|_| bad("stream id"))?,
        priority: row.try_get(6).map_err(|_| bad("priority"))?,
        ordering_key: row.try_get(7).map_err(|_| bad("ordering key"))?,
        status,
        attempts: count(9, "attempts")?,
        failures: count(10, "failures")?,
        errors: Vec::new(),
        created_at: Timestamp::from_unix_micros(int(11, "created_at")?),
        due_at: Timestamp::from_unix_micros(int(12, "due_at")?),
        updated_at: Timestamp::from_unix_micros(int(13, "updated_at")?),
        discard_reason: row.try_get(14).map_err(|_| bad("discard reason"))?,
    })
}

fn refuse_nul(what: &str) -> BackendError {
    BackendError::new(
        BackendErrorKind::Other,
        format!("{what} cannot hold a NUL character"),
    )
}

#[async_trait]
impl HandlerStore for PostgresStore {
    async fn enqueue_requests(
        &self,
        checkpoints: &[(String, Checkpoint)],
        requests: &[NewRequest],
        now: Timestamp,
    ) -> Result<(), BackendError> {
        if checkpoints.iter().any(|(name, _)| unstorable(name)) {
            return Err(refuse_nul("a checkpoint name"));
        }
        if requests
            .iter()
            .any(|r| unstorable(&r.handler) || r.ordering_key.as_deref().is_some_and(unstorable))
        {
            return Err(refuse_nul("a handler name or ordering key"));
        }
        let doing = "storing handler requests";
        let saved_at = now.as_unix_micros();
        let mut client = self.client(doing).await?;
        let tx = client.transaction().await.map_err(|e| backend(doing, e))?;
        let save = tx
            .prepare_cached(&self.sql().save_checkpoint)
            .await
            .map_err(|e| backend(doing, e))?;
        for (name, checkpoint) in checkpoints {
            let position = stored_position(name, checkpoint.position)?;
            tx.execute(
                &save,
                &[
                    name,
                    &position,
                    &checkpoint.event_id.map(|id| *id.as_uuid()),
                    &i64::from(checkpoint.version),
                    &saved_at,
                ],
            )
            .await
            .map_err(|e| backend(doing, e))?;
        }
        if !requests.is_empty() {
            let handlers: Vec<&str> = requests.iter().map(|r| r.handler.as_str()).collect();
            let ids: Vec<uuid::Uuid> = requests.iter().map(|r| *r.event_id.as_uuid()).collect();
            let positions = requests
                .iter()
                .map(|r| stored_position(&r.handler, r.position))
                .collect::<Result<Vec<_>, _>>()?;
            let types: Vec<&str> = requests.iter().map(|r| r.event_type.as_str()).collect();
            let streams: Vec<&str> = requests.iter().map(|r| r.stream_id.as_str()).collect();
            let priorities: Vec<i32> = requests.iter().map(|r| r.priority).collect();
            let keys: Vec<Option<&str>> =
                requests.iter().map(|r| r.ordering_key.as_deref()).collect();
            let insert = format!(
                "INSERT INTO {} (handler, event_id, position, event_type, stream_id, priority, \
                 ordering_key, status, attempts, failures, created_at, due_at, updated_at) \
                 SELECT r.*, 0, 0, 0, $8, $8, $8 FROM unnest($1::text[], $2::uuid[], \
                 $3::bigint[], $4::text[], $5::text[], $6::int4[], $7::text[]) AS r \
                 ON CONFLICT (handler, event_id) DO NOTHING",
                self.table("handler_requests")
            );
            let insert = tx
                .prepare_cached(&insert)
                .await
                .map_err(|e| backend(doing, e))?;
            tx.execute(
                &insert,
                &[
                    &handlers,
                    &ids,
                    &positions,
                    &types,
                    &streams,
                    &priorities,
                    &keys,
                    &saved_at,
                ],
            )
            .await
            .map_err(|e| backend(doing, e))?;
        }
        tx.commit().await.map_err(|e| backend(doing, e))
    }

    async fn claim_requests(&self, claim: &Claim) -> Result<Vec<HandlerRequest>, BackendError> {
        let requests = self.table("handler_requests");
        let errors = self.table("handler_request_errors");
        // One statement: the due requests, locked and skipped by any other
        // claimer; the expired attempts' failures; the new claims.
        let sql = format!(
            "WITH due AS (
                SELECT id, attempts, claimed_by IS NOT NULL AS expired FROM {requests} AS r
                WHERE status = 0 AND due_at <= $1
                  AND (claim_expires IS NULL OR claim_expires <= $1)
                  AND handler = ANY($2::text[])
                  AND (ordering_key IS NULL OR NOT EXISTS (
                      SELECT 1 FROM {requests} AS e
                      WHERE e.status = 0 AND e.handler = r.handler
                        AND e.ordering_key = r.ordering_key
                        AND (e.position, e.id) < (r.position, r.id)))
                ORDER BY priority DESC, position, id
                LIMIT $3
                FOR UPDATE SKIP LOCKED),
             lost AS (
                INSERT INTO {errors} (request, attempt, error, failed_at)
                SELECT id, attempts, $4, $1 FROM due WHERE expired)
             UPDATE {requests} AS r
             SET attempts = r.attempts + 1,
                 failures = r.failures + CASE WHEN due.expired THEN 1 ELSE 0 END,
                 claimed_by = $5, claim_expires = $6, updated_at = $1
             FROM due WHERE r.id = due.id
             RETURNING r.id"
        );
        let now = claim.now.as_unix_micros();
        let until = later(claim.now, claim.lease).as_unix_micros();
        let limit = i64::try_from(claim.limit).unwrap_or(i64::MAX);
        if claim.handlers.iter().any(|h| unstorable(h)) || unstorable(&claim.owner) {
            return Err(refuse_nul("a handler name or claim owner"));
        }
        let claimed = self
            .query(
                "claiming handler requests",
                &sql,
                &[
                    &now,
                    &claim.handlers,
                    &limit,
                    &CLAIM_EXPIRED,
                    &claim.owner,
                    &until,
                ],
            )
            .await?;
        let ids: Vec<i64> = claimed
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()
            .map_err(|_| corrupt("a claimed request's id is unreadable"))?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let select = format!(
            "SELECT {COLUMNS} FROM {requests} WHERE id = ANY($2) \
             ORDER BY priority DESC, position, id"
        );
        self.query_requests(&select, &[&now, &ids]).await
    }

    async fn renew_claims(
        &self,
        owner: &str,
        ids: &[RequestId],
        until: Timestamp,
    ) -> Result<(), BackendError> {
        if ids.is_empty() || unstorable(owner) {
            return Ok(());
        }
        let ids = ids
            .iter()
            .map(|id| sql_id(*id))
            .collect::<Result<Vec<_>, _>>()?;
        let sql = format!(
            "UPDATE {} SET claim_expires = $3 \
             WHERE id = ANY($1) AND status = 0 AND claimed_by = $2",
            self.table("handler_requests")
        );
        self.execute(
            "renewing claims",
            &sql,
            &[&ids, &owner, &until.as_unix_micros()],
        )
        .await
        .map(drop)
    }

    async fn finish_request(
        &self,
        id: RequestId,
        owner: &str,
        finish: Finish,
        now: Timestamp,
    ) -> Result<bool, BackendError> {
        if unstorable(owner) {
            return Ok(false);
        }
        let id = sql_id(id)?;
        let now = now.as_unix_micros();
        let (status, failures, due, attempts_back, error): (i16, i32, Option<i64>, i32, _) =
            match &finish {
                Finish::Done => (code(RequestStatus::Done), 0, None, 0, None),
                Finish::Failed { error, retry_at } => match retry_at {
                    Some(at) => (
                        code(RequestStatus::Pending),
                        1,
                        Some(at.as_unix_micros()),
                        0,
                        Some(error.as_str()),
                    ),
                    None => (code(RequestStatus::Dead), 1, None, 0, Some(error.as_str())),
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
        if error.is_some_and(unstorable) {
            return Err(refuse_nul("an error message"));
        }
        let requests = self.table("handler_requests");
        let errors = self.table("handler_request_errors");
        let sql = format!(
            "WITH held AS (
                SELECT id, attempts FROM {requests}
                WHERE id = $1 AND status = 0 AND claimed_by = $2 FOR UPDATE),
             failed AS (
                INSERT INTO {errors} (request, attempt, error, failed_at)
                SELECT id, attempts, $7, $6 FROM held WHERE $7::text IS NOT NULL)
             UPDATE {requests} AS r
             SET status = $3, failures = r.failures + $4, due_at = coalesce($5, r.due_at),
                 attempts = r.attempts - $8, claimed_by = NULL, claim_expires = NULL,
                 updated_at = $6
             FROM held WHERE r.id = held.id"
        );
        let changed = self
            .execute(
                "finishing a handler request",
                &sql,
                &[
                    &id,
                    &owner,
                    &status,
                    &failures,
                    &due,
                    &now,
                    &error,
                    &attempts_back,
                ],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn list_requests(
        &self,
        filter: &RequestFilter,
        now: Timestamp,
    ) -> Result<Vec<HandlerRequest>, BackendError> {
        if filter.handler.as_deref().is_some_and(unstorable)
            || filter.event_type.as_deref().is_some_and(unstorable)
        {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM {} WHERE {MATCHES} ORDER BY id LIMIT $9",
            self.table("handler_requests")
        );
        let params = FilterParams::new(filter, now)?;
        self.query_requests(&sql, &params.params()).await
    }

    async fn requeue_requests(
        &self,
        filter: &RequestFilter,
        now: Timestamp,
    ) -> Result<u64, BackendError> {
        if filter.handler.as_deref().is_some_and(unstorable)
            || filter.event_type.as_deref().is_some_and(unstorable)
        {
            return Ok(0);
        }
        let requests = self.table("handler_requests");
        let dead = code(RequestStatus::Dead);
        let sql = format!(
            "UPDATE {requests} SET status = 0, failures = 0, due_at = $1, updated_at = $1
             WHERE id IN (SELECT id FROM {requests}
                          WHERE status = {dead} AND {MATCHES} ORDER BY id LIMIT $9)"
        );
        let params = FilterParams::new(filter, now)?;
        self.execute("requeuing dead requests", &sql, &params.params())
            .await
    }

    async fn discard_request(
        &self,
        id: RequestId,
        reason: &str,
        now: Timestamp,
    ) -> Result<bool, BackendError> {
        if unstorable(reason) {
            return Err(refuse_nul("a discard reason"));
        }
        let sql = format!(
            "UPDATE {} SET status = {}, discard_reason = $2, updated_at = $3 \
             WHERE id = $1 AND status = {}",
            self.table("handler_requests"),
            code(RequestStatus::Discarded),
            code(RequestStatus::Dead),
        );
        let changed = self
            .execute(
                "discarding a dead request",
                &sql,
                &[&sql_id(id)?, &reason, &now.as_unix_micros()],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn request_counts(&self, now: Timestamp) -> Result<RequestCounts, BackendError> {
        let sql = format!(
            "SELECT {SHOWN} AS shown, count(*) FROM {} GROUP BY shown",
            self.table("handler_requests")
        );
        let rows = self
            .query("counting handler requests", &sql, &[&now.as_unix_micros()])
            .await?;
        let mut counts = RequestCounts::default();
        for row in &rows {
            let bad = || corrupt("a request count is unreadable");
            let n = u64::try_from(row.try_get::<_, i64>(1).map_err(|_| bad())?).unwrap_or(0);
            match request_status_from_code(i64::from(row.try_get::<_, i16>(0).map_err(|_| bad())?))
            {
                Some(RequestStatus::Pending) => counts.pending = n,
                Some(RequestStatus::Running) => counts.running = n,
                Some(RequestStatus::Done) => counts.done = n,
                Some(RequestStatus::Dead) => counts.dead = n,
                _ => counts.discarded += n,
            }
        }
        Ok(counts)
    }

    async fn unsettled_requests(&self) -> Result<u64, BackendError> {
        let sql = format!(
            "SELECT count(*) FROM {} WHERE status = 0",
            self.table("handler_requests")
        );
        let rows = self.query("counting unsettled requests", &sql, &[]).await?;
        let count: i64 = rows
            .first()
            .and_then(|row| row.try_get(0).ok())
            .ok_or_else(|| corrupt("the count of unsettled requests is unreadable"))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}
