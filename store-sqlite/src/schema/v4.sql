-- annals schema version 4: where followers of the log keep their place.
--
-- A checkpoint is the position a named follower has read through, with the
-- id of the event stored there (NULL at the start of the log) so that a
-- follower coming back can tell whether the log it left is still there.
CREATE TABLE checkpoints (
    name     TEXT    PRIMARY KEY,
    position INTEGER NOT NULL,
    -- The event id as a hyphenated UUID; NULL when there is none.
    event_id TEXT,
    version  INTEGER NOT NULL,
    -- Microseconds since the Unix epoch, set by the store.
    saved_at INTEGER NOT NULL
) WITHOUT ROWID;

-- The events a follower gave up on, saved in the transaction of the
-- checkpoint that moved past them; never their payload. The key lists a
-- name's events in position order.
CREATE TABLE skipped_events (
    name       TEXT    NOT NULL,
    position   INTEGER NOT NULL,
    event_id   TEXT    NOT NULL,
    event_type TEXT    NOT NULL,
    error      TEXT    NOT NULL,
    skipped_at INTEGER NOT NULL,
    PRIMARY KEY (name, position, event_id)
) WITHOUT ROWID;

UPDATE annals_meta SET value = '4' WHERE key = 'schema_version';
