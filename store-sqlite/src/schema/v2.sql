-- annals schema version 2: aggregate snapshots, a cache beside the log.
CREATE TABLE snapshots (
    stream_id     TEXT    PRIMARY KEY,
    version       INTEGER NOT NULL,
    state_version INTEGER NOT NULL,
    state         TEXT    NOT NULL,
    taken_at      INTEGER NOT NULL
) WITHOUT ROWID;

UPDATE annals_meta SET value = '2' WHERE key = 'schema_version';
