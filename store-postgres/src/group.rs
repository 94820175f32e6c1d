//! The common case of a group commit: the whole group in one statement,
//! one round trip and one commit ([`append_group`](../schema/v2.sql)).
//!
//! The group's appends go to the server as arrays; the function checks
//! each one as the store contract says and answers per append. It decides
//! only what needs no look at stored events: when an id of the group is
//! already stored, or the group cannot be put into its arrays, the caller
//! decides the group with the shared append sequence instead
//! ([`crate::writer`]'s two round trips).

use std::collections::HashSet;

use annals_core::store::MAX_VERSION;
use annals_core::{
    ActualVersion, AppendError, AppendOutcome, AppendRequest, BackendError, BackendErrorKind,
    ExpectedVersion, Position, Timestamp,
};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement};

use crate::error::corrupt;

/// The SQLSTATE the function raises when an id of the group is stored.
pub(crate) const ID_STORED: &str = "AN001";

/// The group as the function's arguments.
#[derive(Default)]
pub(crate) struct Arrays<'r> {
    a_streams: Vec<i32>,
    a_track_name: Vec<Option<&'r str>>,
    a_track_first: Vec<Option<i64>>,
    a_track_position: Vec<Option<i64>>,
    a_track_event: Vec<Option<uuid::Uuid>>,
    a_track_version: Vec<Option<i64>>,
    s_stream: Vec<&'r str>,
    s_expected: Vec<i64>,
    s_events: Vec<i32>,
    e_stream: Vec<&'r str>,
    e_id: Vec<uuid::Uuid>,
    e_type: Vec<&'r str>,
    e_schema: Vec<i32>,
    e_payload: Vec<&'r str>,
    e_metadata: Vec<Option<String>>,
    /// Per stream entry, the (1-based) append it is part of.
    s_append: Vec<i32>,
    /// Per event, its (1-based) stream entry and place in it.
    e_entry: Vec<i32>,
    e_place: Vec<i32>,
    /// Whether the group suits the one-statement path: no checkpoint
    /// tracked, and no stream in two entries.
    simple: bool,
}

/// An insert that found one of its event ids stored: the statement wrote
/// nothing, and the group is decided another way.
fn is_unique_violation(error: &tokio_postgres::Error) -> bool {
    error.code().is_some_and(|c| c.code() == "23505")
}

/// The largest version, as the statements take it.
fn max_version() -> i64 {
    // MAX_VERSION is i64::MAX: it fits.
    i64::try_from(MAX_VERSION).unwrap_or(i64::MAX)
}

/// The expected version as the function reads it; `None` for one it does
/// not know.
fn expected_code(expected: ExpectedVersion) -> Option<i64> {
    Some(match expected {
        ExpectedVersion::Any => -1,
        ExpectedVersion::NoStream => -2,
        ExpectedVersion::StreamExists => -3,
        // No stored version is above i64::MAX: such an expectation is
        // never met.
        ExpectedVersion::Exact(v) => i64::try_from(v).unwrap_or(-4),
        #[allow(unreachable_patterns)]
        _ => return None,
    })
}

impl<'r> Arrays<'r> {
    /// The group's arrays, or `None` when the function cannot take it: an
    /// id twice in the group, or a value out of its range.
    pub(crate) fn new(requests: impl Iterator<Item = &'r AppendRequest>) -> Option<Self> {
        let mut arrays = Arrays {
            simple: true,
            ..Arrays::default()
        };
        let mut ids = HashSet::new();
        let mut streams = HashSet::new();
        for (append, request) in (1..).zip(requests) {
            arrays
                .a_streams
                .push(i32::try_from(request.streams().len()).ok()?);
            let tracking = request.tracking();
            arrays.simple &= tracking.is_none();
            arrays.a_track_name.push(tracking.map(|t| t.name.as_str()));
            arrays.a_track_first.push(match tracking {
                Some(t) => Some(i64::try_from(t.first.0).ok()?),
                None => None,
            });
            arrays.a_track_position.push(match tracking {
                Some(t) => Some(i64::try_from(t.checkpoint.position.0).ok()?),
                None => None,
            });
            arrays
                .a_track_event
                .push(tracking.and_then(|t| t.checkpoint.event_id.map(|id| *id.as_uuid())));
            arrays
                .a_track_version
                .push(tracking.map(|t| i64::from(t.checkpoint.version)));
            for s in request.streams() {
                arrays.simple &= streams.insert(s.stream.as_str());
                arrays.s_append.push(append);
                let entry = i32::try_from(arrays.s_stream.len() + 1).ok()?;
                arrays.s_stream.push(s.stream.as_str());
                arrays.s_expected.push(expected_code(s.expected)?);
                arrays.s_events.push(i32::try_from(s.events.len()).ok()?);
                for (event, place) in s.events.iter().zip(1..) {
                    if !ids.insert(event.event_id()) {
                        return None;
                    }
                    arrays.e_entry.push(entry);
                    arrays.e_place.push(place);
                    arrays.e_stream.push(s.stream.as_str());
                    arrays.e_id.push(*event.event_id().as_uuid());
                    arrays.e_type.push(event.event_type().as_str());
                    arrays
                        .e_schema
                        .push(i32::try_from(event.schema_version()).ok()?);
                    arrays.e_payload.push(event.payload().as_str());
                    let metadata = event.metadata();
                    arrays
                        .e_metadata
                        .push((!metadata.is_empty()).then(|| metadata.to_json()));
                }
            }
        }
        Some(arrays)
    }

    /// Runs the one-statement path when the group suits it. `Ok(None)`
    /// when it does not, or when the statement wrote nothing because what
    /// it read may be out of date or an id of the group is stored.
    pub(crate) async fn run_at_once(
        &self,
        client: &Client,
        statement: &Statement,
        recorded_at: Timestamp,
        channel: Option<&str>,
    ) -> Result<Option<Vec<Row>>, tokio_postgres::Error> {
        if !self.simple {
            return Ok(None);
        }
        let (recorded, max_version) = (recorded_at.as_unix_micros(), max_version());
        let params: [&(dyn ToSql + Sync); 14] = [
            &self.s_stream,
            &self.s_expected,
            &self.s_events,
            &self.s_append,
            &self.e_entry,
            &self.e_place,
            &self.e_id,
            &self.e_type,
            &self.e_schema,
            &self.e_payload,
            &self.e_metadata,
            &recorded,
            &max_version,
            &channel,
        ];
        self.attempt(client, statement, &params).await
    }

    /// Runs the leanest statement when the group is one append to one
    /// stream that tracks no checkpoint. `Ok(None)` when it is not, or
    /// when the statement wrote nothing because what it read may be out of
    /// date or an id of the append is stored.
    pub(crate) async fn run_one(
        &self,
        client: &Client,
        statement: &Statement,
        recorded_at: Timestamp,
        channel: Option<&str>,
    ) -> Result<Option<Vec<Row>>, tokio_postgres::Error> {
        if !(self.simple && self.a_streams.len() == 1 && self.s_stream.len() == 1) {
            return Ok(None);
        }
        let (recorded, max_version) = (recorded_at.as_unix_micros(), max_version());
        let params: [&(dyn ToSql + Sync); 11] = [
            &self.s_stream[0],
            &self.s_expected[0],
            &self.s_events[0],
            &self.e_id,
            &self.e_type,
            &self.e_schema,
            &self.e_payload,
            &self.e_metadata,
            &recorded,
            &max_version,
            &channel,
        ];
        self.attempt(client, statement, &params).await
    }

    /// Runs a one-statement path: its rows when it answered every append,
    /// `None` when it wrote nothing (no rows: what it read may be out of
    /// date, or a refused append's id is stored; a unique-key failure: a
    /// passing append's id is stored).
    async fn attempt(
        &self,
        client: &Client,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Vec<Row>>, tokio_postgres::Error> {
        match client.query(statement, params).await {
            Ok(rows) => Ok((rows.len() == self.a_streams.len()).then_some(rows)),
            Err(e) if is_unique_violation(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Calls the function. `Ok(None)` when an id of the group is stored.
    pub(crate) async fn call(
        &self,
        client: &Client,
        statement: &Statement,
        recorded_at: Timestamp,
        channel: Option<&str>,
    ) -> Result<Option<Vec<Row>>, tokio_postgres::Error> {
        let (recorded, max_version) = (recorded_at.as_unix_micros(), max_version());
        let params: [&(dyn ToSql + Sync); 18] = [
            &self.a_streams,
            &self.a_track_name,
            &self.a_track_first,
            &self.a_track_position,
            &self.a_track_event,
            &self.a_track_version,
            &self.s_stream,
            &self.s_expected,
            &self.s_events,
            &self.e_stream,
            &self.e_id,
            &self.e_type,
            &self.e_schema,
            &self.e_payload,
            &self.e_metadata,
            &recorded,
            &max_version,
            &channel,
        ];
        match client.query(statement, &params).await {
            Ok(rows) => Ok(Some(rows)),
            Err(e) if e.code().is_some_and(|c| c.code() == ID_STORED) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Each append's answer from the row for it. The requests are taken: a
/// stored append's events become its recorded events without a copy.
pub(crate) fn answers(
    requests: Vec<AppendRequest>,
    rows: &[Row],
    recorded_at: Timestamp,
) -> Result<Vec<Result<AppendOutcome, AppendError>>, BackendError> {
    if rows.len() != requests.len() {
        return Err(BackendError::new(
            BackendErrorKind::Other,
            "the append function answered a group with another number of appends",
        ));
    }
    requests
        .into_iter()
        .zip(rows)
        .map(|(request, row)| answer(request, row, recorded_at))
        .collect()
}

fn answer(
    request: AppendRequest,
    row: &Row,
    recorded_at: Timestamp,
) -> Result<Result<AppendOutcome, AppendError>, BackendError> {
    let bad = || corrupt("the append function's answer is unreadable");
    let status: i16 = row.try_get(0).map_err(|_| bad())?;
    let stream_index: Option<i32> = row.try_get(1).map_err(|_| bad())?;
    let detail: Option<i64> = row.try_get(2).map_err(|_| bad())?;
    let stream = || {
        stream_index
            .and_then(|k| usize::try_from(k).ok())
            .and_then(|k| request.streams().get(k))
            .ok_or_else(bad)
    };
    let version = |v: i64| u64::try_from(v).map_err(|_| bad());
    Ok(match status {
        0 => {
            let first: i64 = row.try_get(3).map_err(|_| bad())?;
            let bases: Vec<i64> = row.try_get(4).map_err(|_| bad())?;
            let mut position = version(first)?;
            let count = request.event_count();
            let mut recorded = Vec::with_capacity(count);
            for (s, base) in request.into_streams().into_iter().zip(bases) {
                let base = version(base)?;
                for (event, v) in s.events.into_iter().zip(base + 1..) {
                    recorded.push(event.into_recorded(
                        s.stream.clone(),
                        v,
                        Position(position),
                        recorded_at,
                    ));
                    position += 1;
                }
            }
            if recorded.len() != count {
                return Err(bad());
            }
            Ok(AppendOutcome::new(recorded))
        }
        1 => {
            let s = stream()?;
            let actual: Option<u64> = detail.map(version).transpose()?;
            Err(AppendError::Conflict {
                stream: s.stream.clone(),
                expected: s.expected,
                actual: ActualVersion::from(actual),
            })
        }
        2 => {
            let tracking = request.tracking().ok_or_else(bad)?;
            Err(AppendError::AlreadyTracked {
                name: tracking.name.clone(),
                stored: Position(version(detail.ok_or_else(bad)?)?),
                requested: tracking.first,
            })
        }
        3 => Err(AppendError::VersionOverflow {
            stream: stream()?.stream.clone(),
        }),
        _ => return Err(bad()),
    })
}
