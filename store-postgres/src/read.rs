//! Reads: streams, the global log with its filters, snapshots and
//! checkpoints, each one statement (or one pipeline) on a pooled
//! connection.
//!
//! # A page of the log, and why no reader skips an event
//!
//! Positions are assigned under the head lock and the lock is held until
//! commit ([`crate::writer`]): an event at position p is visible only
//! after every event below p is. A page reads the head first and then the
//! events after the reader's start: every event up to that head had
//! committed before the page's query began, so a page with fewer events
//! than its limit has looked through the head, and a reader that goes on
//! from the last position it saw never finds an event committing below it.
//!
//! Every filter runs in the database: a category is one arm that walks
//! `events_by_category` in position order from the reader's start and
//! stops after `limit` matches; a prefix is a range of stream ids (the "C"
//! collation compares bytes, never `LIKE`); event types narrow what the
//! arms find.

use annals_core::store::{prefix_bounds, stream_read_start};
use annals_core::{Direction, LogFilter, ReadStream, StreamId};
use tokio_postgres::types::ToSql;

use crate::row::{to_sql_int, EVENT_COLUMNS};

/// A query of the log with its parameters; `$1` is the start.
pub(crate) struct LogQuery {
    pub(crate) sql: String,
    pub(crate) params: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl LogQuery {
    fn bind(&mut self, value: impl ToSql + Sync + Send + 'static) -> String {
        self.params.push(Box::new(value));
        format!("${}", self.params.len())
    }
}

/// The query of one page of the log, `None` when the filter matches
/// nothing.
pub(crate) fn log_query(
    schema: &str,
    after: u64,
    filter: &LogFilter,
    limit: usize,
) -> Option<LogQuery> {
    let types = filter.event_types();
    if types.is_some_and(<[_]>::is_empty) {
        return None;
    }
    let mut query = LogQuery {
        sql: String::new(),
        params: Vec::new(),
    };
    query.bind(to_sql_int(after));
    let only_types = match types {
        Some(types) => {
            let names: Vec<String> = types.iter().map(|t| t.as_str().to_owned()).collect();
            format!(" AND event_type = ANY({}::text[])", query.bind(names))
        }
        None => String::new(),
    };
    if filter.all_streams() {
        let limit = query.bind(to_sql_int(limit as u64));
        query.sql = format!(
            "SELECT {EVENT_COLUMNS} FROM {schema}.events WHERE position > $1{only_types} \
             ORDER BY position LIMIT {limit}"
        );
        return Some(query);
    }
    let mut arms = Vec::new();
    // No category holds a '-': such a category matches no stream.
    for category in filter.categories().iter().filter(|c| !c.contains('-')) {
        let category = query.bind(category.clone());
        arms.push(format!(
            "split_part(stream_id, '-', 1) = {category}{only_types}"
        ));
    }
    for prefix in filter.prefixes() {
        let (lower, upper) = prefix_bounds(prefix);
        let lower = query.bind(lower);
        let range = match upper {
            Some(upper) => format!("stream_id >= {lower} AND stream_id < {}", query.bind(upper)),
            None => format!("stream_id >= {lower}"),
        };
        arms.push(format!("{range}{only_types}"));
    }
    if arms.is_empty() {
        return None;
    }
    let limit = query.bind(to_sql_int(limit as u64));
    let arms: Vec<String> = arms
        .iter()
        .map(|condition| {
            format!(
                "(SELECT position FROM {schema}.events WHERE {condition} AND position > $1 \
                 ORDER BY position LIMIT {limit})"
            )
        })
        .collect();
    // UNION, not UNION ALL: an event two arms match is read once.
    query.sql = format!(
        "SELECT {EVENT_COLUMNS} FROM {schema}.events WHERE position IN \
         (SELECT position FROM ({}) AS arms ORDER BY position LIMIT {limit}) \
         ORDER BY position",
        arms.join(" UNION ")
    );
    Some(query)
}

/// Which statement reads a stream page, from where and how many; `None`
/// when the page is empty by its limit.
pub(crate) fn stream_query<'s>(
    read: &ReadStream,
    forward: &'s str,
    backward: &'s str,
) -> Option<(&'s str, i64, i64)> {
    let (direction, from) = stream_read_start(read)?;
    let sql = match direction {
        Direction::Backward => backward,
        _ => forward,
    };
    Some((sql, to_sql_int(from), to_sql_int(read.max_count() as u64)))
}

/// The stream id as the statements bind it.
pub(crate) fn stream_param(stream: &StreamId) -> &str {
    stream.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use annals_core::{EventType, Position, ReadAll};

    #[test]
    fn filters_that_match_nothing_make_no_query() -> Result<(), annals_core::InvalidName> {
        let start = || ReadAll::after(Position::START);
        assert!(log_query("s", 0, start().event_types([]).filter(), 10).is_none());
        assert!(log_query("s", 0, start().category("a-b").filter(), 10).is_none());
        let typed = start().category("a").event_type(EventType::new("T")?);
        let query = log_query("s", 0, typed.filter(), 10).map(|q| q.sql);
        assert!(
            query
                .as_deref()
                .is_some_and(|q| q.contains("split_part") && q.contains("event_type = ANY")),
            "{query:?}"
        );
        Ok(())
    }
}
