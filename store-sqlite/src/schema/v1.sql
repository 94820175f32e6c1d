-- annals schema version 1: the event log.
--
-- `position` is the rowid: the writer assigns it inside the write
-- transaction, so commit order is position order and positions have no gaps.
CREATE TABLE annals_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE events (
    position       INTEGER PRIMARY KEY,
    stream_id      TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    event_id       BLOB    NOT NULL UNIQUE,
    event_type     TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    payload        TEXT    NOT NULL,
    -- NULL when the event has no metadata.
    metadata       TEXT,
    -- Microseconds since the Unix epoch, set by the store.
    recorded_at    INTEGER NOT NULL,
    UNIQUE (stream_id, version)
);

-- The log is append-only: nothing may change or remove an event.
CREATE TRIGGER events_are_never_updated BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'annals events are append-only');
END;

CREATE TRIGGER events_are_never_deleted BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'annals events are append-only');
END;

INSERT INTO annals_meta (key, value) VALUES ('format', 'annals');
INSERT INTO annals_meta (key, value) VALUES ('schema_version', '1');
