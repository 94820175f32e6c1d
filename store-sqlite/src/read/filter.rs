//! A filtered read of the global log, as SQL that the indexes serve.
//!
//! Every filter runs in the database; nothing is read to be thrown away in
//! Rust. A category is one arm that walks its index (`events_by_category`,
//! ordered by position) from the read's start and stops after `limit`
//! matches; a prefix is a range of stream ids. The arms are merged in
//! position order and cut to `limit`, so a page costs about `limit` index
//! entries per arm, however rare the matches are in the log. Event types
//! narrow what the arms find; a filter on types alone walks the log in
//! position order (no index: each index costs every commit a page). Stream
//! ids compare byte for byte (ranges, never `LIKE`).

use annals_core::store::prefix_bounds;
use annals_core::LogFilter;
use rusqlite::types::Value;

use crate::row::{to_sql_int, EVENT_COLUMNS};

/// The SQL expression of a stream's category: the text before the first
/// `-` (every stream id holds one). `events_by_category` indexes exactly
/// this expression, so a query must spell it the same way to use it.
pub(crate) const CATEGORY: &str = "substr(stream_id, 1, instr(stream_id, '-') - 1)";

/// A log query and its parameters.
pub(crate) struct LogQuery {
    pub(crate) sql: String,
    pub(crate) params: Vec<Value>,
}

/// Bound parameters, numbered as they are added.
struct Params(Vec<Value>);

impl Params {
    /// Binds `value` and returns its placeholder.
    fn bind(&mut self, value: Value) -> String {
        self.0.push(value);
        format!("?{}", self.0.len())
    }

    fn text(&mut self, text: &str) -> String {
        self.bind(Value::Text(text.to_owned()))
    }
}

/// The query for events after `after`, matching `filter`, at most `limit`;
/// `None` when the filter can match nothing.
pub(crate) fn log_query(after: u64, filter: &LogFilter, limit: usize) -> Option<LogQuery> {
    let types = filter.event_types();
    if types.is_some_and(<[_]>::is_empty) {
        return None;
    }
    let mut params = Params(Vec::new());
    // ?1 is the start in every arm.
    params.bind(Value::Integer(to_sql_int(after)));
    let mut arms: Vec<String> = Vec::new();
    let only_types = match types {
        Some(types) => {
            let names: Vec<String> = types.iter().map(|t| params.text(t.as_str())).collect();
            format!(" AND event_type IN ({})", names.join(", "))
        }
        None => String::new(),
    };
    if filter.all_streams() {
        let limit = params.bind(Value::Integer(to_sql_int(limit as u64)));
        return Some(LogQuery {
            sql: format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE position > ?1{only_types} \
                 ORDER BY position LIMIT {limit}"
            ),
            params: params.0,
        });
    } else {
        // No category holds a '-': such a category matches no stream.
        for category in filter.categories().iter().filter(|c| !c.contains('-')) {
            arms.push(format!(
                "{CATEGORY} = {}{only_types}",
                params.text(category)
            ));
        }
        for prefix in filter.prefixes() {
            let (lower, upper) = prefix_bounds(prefix);
            let lower = params.text(&lower);
            let range = match upper {
                Some(upper) => format!(
                    "stream_id >= {lower} AND stream_id < {}",
                    params.text(&upper)
                ),
                None => format!("stream_id >= {lower}"),
            };
            arms.push(format!("{range}{only_types}"));
        }
        if arms.is_empty() {
            return None;
        }
    }
    let limit = params.bind(Value::Integer(to_sql_int(limit as u64)));
    let arms: Vec<String> = arms
        .iter()
        .map(|condition| {
            format!(
                "SELECT position FROM (SELECT position FROM events \
                 WHERE {condition} AND position > ?1 ORDER BY position LIMIT {limit})"
            )
        })
        .collect();
    // UNION, not UNION ALL: an event that two arms match (a category and a
    // prefix of the same stream) is read once.
    Some(LogQuery {
        sql: format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE position IN \
             (SELECT position FROM ({}) ORDER BY position LIMIT {limit}) \
             ORDER BY position",
            arms.join(" UNION ")
        ),
        params: params.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use annals_core::{EventType, Position, ReadAll};

    fn plan(read: &ReadAll) -> Result<String, Box<dyn std::error::Error>> {
        let conn = rusqlite::Connection::open_in_memory()?;
        for migration in crate::schema::migrations() {
            conn.execute_batch(migration)?;
        }
        let query = log_query(0, read.filter(), 100).ok_or("no query")?;
        let mut explain = conn.prepare(&format!("EXPLAIN QUERY PLAN {}", query.sql))?;
        let details: Vec<String> = explain
            .query_map(rusqlite::params_from_iter(query.params.iter()), |r| {
                r.get(3)
            })?
            .collect::<Result<_, _>>()?;
        Ok(details.join("\n"))
    }

    #[test]
    fn category_filters_walk_their_index_and_type_filters_the_log_by_position(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let start = || ReadAll::after(Position::START);
        let by_category = plan(&start().category("order").category("stock"))?;
        assert!(by_category.contains("events_by_category"), "{by_category}");
        assert!(!by_category.contains("SCAN events"), "{by_category}");
        // Types alone walk the log from the start position, by rowid.
        let by_type = plan(&start().event_type(EventType::new("Paid")?))?;
        assert!(
            by_type.contains("INTEGER PRIMARY KEY (rowid>?)"),
            "{by_type}"
        );
        let both = plan(
            &start()
                .category("order")
                .event_type(EventType::new("Paid")?),
        )?;
        assert!(both.contains("events_by_category"), "{both}");
        Ok(())
    }

    #[test]
    fn filters_that_match_nothing_make_no_query() -> Result<(), annals_core::InvalidName> {
        let start = || ReadAll::after(Position::START);
        assert!(log_query(0, start().event_types([]).filter(), 10).is_none());
        assert!(log_query(0, start().category("a-b").filter(), 10).is_none());
        let typed = start().category("a").event_type(EventType::new("T")?);
        let query = log_query(0, typed.filter(), 10)
            .map(|q| q.sql)
            .unwrap_or_default();
        assert!(
            query.contains(CATEGORY) && query.contains("event_type IN"),
            "{query}"
        );
        Ok(())
    }
}
