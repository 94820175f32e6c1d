//! The store's SQL, with the schema's quoted name in place. Values always
//! travel as parameters; the only text put into a statement is the schema
//! name, validated and quoted ([`SchemaName`]).

use crate::name::SchemaName;
use crate::row::{EVENT_COLUMNS, REPLAY_COLUMNS};

/// Every fixed statement of one store.
#[derive(Debug)]
pub(crate) struct Sql {
    /// The quoted schema, for statements built per call.
    pub(crate) schema: String,
    pub(crate) append_group: String,
    pub(crate) append_set: String,
    pub(crate) append_one: String,
    pub(crate) lock_head: String,
    pub(crate) versions: String,
    pub(crate) by_ids: String,
    pub(crate) tracked: String,
    pub(crate) insert_events: String,
    pub(crate) set_head: String,
    pub(crate) save_checkpoints: String,
    pub(crate) head: String,
    pub(crate) stream_forward: String,
    pub(crate) stream_backward: String,
    pub(crate) replay_forward: String,
    pub(crate) replay_backward: String,
    pub(crate) save_snapshot: String,
    pub(crate) load_snapshot: String,
    pub(crate) load_checkpoint: String,
    pub(crate) save_checkpoint: String,
    pub(crate) insert_skipped: String,
    pub(crate) skipped_events: String,
    pub(crate) delete_checkpoint: String,
    pub(crate) delete_skipped: String,
}

impl Sql {
    pub(crate) fn new(schema: &SchemaName) -> Sql {
        let s = schema.quoted();
        let upsert_checkpoint = "ON CONFLICT (name) DO UPDATE SET position = excluded.position, \
             event_id = excluded.event_id, version = excluded.version, saved_at = excluded.saved_at";
        Sql {
            append_group: format!(
                "SELECT status, stream_index, detail, first_position, bases FROM \
                 {s}.append_group($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
                 $15, $16, $17, $18)"
            ),
            append_one: without_comments(include_str!("append_one.sql")).replace("__SCHEMA__", &s),
            append_set: without_comments(include_str!("append_set.sql")).replace("__SCHEMA__", &s),
            // The lock every append takes first and holds to commit: see
            // the crate's docs on why no reader skips an event.
            // (`FOR UPDATE` waits for the holder to commit and then returns
            // the head it committed: the row as it is now, not as it was
            // when the statement began.)
            lock_head: format!("SELECT position FROM {s}.log_head WHERE one FOR UPDATE"),
            // Each stream's version from the end of its index (a GROUP BY
            // would read every event of the stream).
            versions: format!(
                "SELECT s.stream_id, v.version FROM unnest($1::text[]) AS s(stream_id) \
                 CROSS JOIN LATERAL (SELECT max(e.version) AS version FROM {s}.events AS e \
                 WHERE e.stream_id = s.stream_id) AS v WHERE v.version IS NOT NULL"
            ),
            by_ids: format!(
                "SELECT {EVENT_COLUMNS} FROM {s}.events WHERE event_id = ANY($1::uuid[])"
            ),
            tracked: format!(
                "SELECT name, position FROM {s}.checkpoints \
                 WHERE name = ANY($1::text[]) FOR UPDATE"
            ),
            insert_events: format!(
                "INSERT INTO {s}.events ({EVENT_COLUMNS}) \
                 SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::uuid[], \
                 $5::text[], $6::int4[], $7::text[], $8::text[], $9::bigint[])"
            ),
            set_head: format!("UPDATE {s}.log_head SET position = $1 WHERE one"),
            save_checkpoints: format!(
                "INSERT INTO {s}.checkpoints (name, position, event_id, version, saved_at) \
                 SELECT * FROM unnest($1::text[], $2::bigint[], $3::uuid[], $4::bigint[], \
                 $5::bigint[]) {upsert_checkpoint}"
            ),
            head: format!("SELECT position FROM {s}.log_head"),
            stream_forward: format!(
                "SELECT {EVENT_COLUMNS} FROM {s}.events \
                 WHERE stream_id = $1 AND version >= $2 ORDER BY version ASC LIMIT $3"
            ),
            stream_backward: format!(
                "SELECT {EVENT_COLUMNS} FROM {s}.events \
                 WHERE stream_id = $1 AND version <= $2 ORDER BY version DESC LIMIT $3"
            ),
            replay_forward: format!(
                "SELECT {REPLAY_COLUMNS} FROM {s}.events \
                 WHERE stream_id = $1 AND version >= $2 ORDER BY version ASC LIMIT $3"
            ),
            replay_backward: format!(
                "SELECT {REPLAY_COLUMNS} FROM {s}.events \
                 WHERE stream_id = $1 AND version <= $2 ORDER BY version DESC LIMIT $3"
            ),
            save_snapshot: format!(
                "INSERT INTO {s}.snapshots (stream_id, version, state_version, state, taken_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (stream_id) DO UPDATE SET \
                 version = excluded.version, state_version = excluded.state_version, \
                 state = excluded.state, taken_at = excluded.taken_at \
                 WHERE {s}.snapshots.version <= excluded.version"
            ),
            load_snapshot: format!(
                "SELECT version, state_version, state, taken_at FROM {s}.snapshots \
                 WHERE stream_id = $1"
            ),
            load_checkpoint: format!(
                "SELECT position, event_id, version FROM {s}.checkpoints WHERE name = $1"
            ),
            // A lower position leaves the checkpoint as it is: a follower
            // that lags behind another never moves it back (a reset deletes
            // the row, and then any position goes).
            save_checkpoint: format!(
                "INSERT INTO {s}.checkpoints (name, position, event_id, version, saved_at) \
                 VALUES ($1, $2, $3, $4, $5) {upsert_checkpoint} \
                 WHERE excluded.position >= {s}.checkpoints.position"
            ),
            insert_skipped: format!(
                "INSERT INTO {s}.skipped_events \
                 (name, position, event_id, event_type, error, skipped_at) \
                 SELECT $1, * FROM unnest($2::bigint[], $3::uuid[], $4::text[], $5::text[], \
                 $6::bigint[]) ON CONFLICT DO NOTHING"
            ),
            skipped_events: format!(
                "SELECT position, event_id, event_type, error, skipped_at \
                 FROM {s}.skipped_events WHERE name = $1 ORDER BY position, event_id"
            ),
            delete_checkpoint: format!("DELETE FROM {s}.checkpoints WHERE name = $1"),
            delete_skipped: format!("DELETE FROM {s}.skipped_events WHERE name = $1"),
            schema: s,
        }
    }
}

/// The statement without its comment lines: what the server shows of a
/// running statement (`pg_stat_activity`) starts with the statement itself.
fn without_comments(sql: &str) -> String {
    sql.lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
}
