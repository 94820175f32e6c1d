-- What the runner keeps in a read model's database beside the model's own
-- tables: each projection's checkpoint, and the events it skipped.
CREATE TABLE IF NOT EXISTS annals_projections (
    name TEXT PRIMARY KEY NOT NULL,
    -- The projection's VERSION that built the tables.
    version INTEGER NOT NULL,
    -- Every event up to here is in the tables (or did not concern them).
    position INTEGER NOT NULL,
    -- The id of the event stored at `position`, to notice a log that lost
    -- commits after it was read.
    event_id TEXT,
    -- The tables `create` made, as a JSON array: what a swap or a reset drops.
    tables TEXT NOT NULL
) STRICT;

CREATE TABLE IF NOT EXISTS annals_skipped_events (
    projection TEXT NOT NULL,
    position INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    error TEXT NOT NULL,
    skipped_at INTEGER NOT NULL,
    PRIMARY KEY (projection, position, event_id)
) STRICT, WITHOUT ROWID;
