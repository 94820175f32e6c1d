-- The baseline's table: annals' columns and index, so that both sides
-- store the same bytes and keep the same indexes up to date.
CREATE TABLE IF NOT EXISTS events (
    position       INTEGER PRIMARY KEY,
    stream_id      TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    event_id       BLOB    NOT NULL UNIQUE,
    event_type     TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    payload        TEXT    NOT NULL,
    metadata       TEXT,
    recorded_at    INTEGER NOT NULL,
    UNIQUE (stream_id, version)
);

CREATE INDEX IF NOT EXISTS events_by_category
    ON events (substr(stream_id, 1, instr(stream_id, '-') - 1), position);

