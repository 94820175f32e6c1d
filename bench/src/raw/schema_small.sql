-- The baseline's table in the small shape, as earlier builds of the bench
-- made it: annals' columns less schema_version and metadata, and no index
-- beyond the two uniqueness constraints.
CREATE TABLE IF NOT EXISTS events (
    position    INTEGER PRIMARY KEY,
    stream_id   TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    event_id    BLOB    NOT NULL UNIQUE,
    event_type  TEXT    NOT NULL,
    payload     TEXT    NOT NULL,
    recorded_at INTEGER NOT NULL,
    UNIQUE (stream_id, version)
);
