-- What the runner keeps in a read model's schema beside the model's own
-- tables: each projection's checkpoint, and the events it skipped.
CREATE TABLE IF NOT EXISTS {schema}.annals_projections (
    name TEXT PRIMARY KEY,
    -- The projection's VERSION that built the tables.
    version BIGINT NOT NULL,
    -- Every event up to here is in the tables (or did not concern them).
    position BIGINT NOT NULL,
    -- The id of the event stored at `position`, to notice a log that lost
    -- commits after it was read.
    event_id UUID,
    -- The relations `create` made: what a swap drops.
    tables TEXT[] NOT NULL
);

CREATE TABLE IF NOT EXISTS {schema}.annals_skipped_events (
    projection TEXT NOT NULL,
    position BIGINT NOT NULL,
    event_id UUID NOT NULL,
    event_type TEXT NOT NULL,
    error TEXT NOT NULL,
    -- Microseconds since the Unix epoch.
    skipped_at BIGINT NOT NULL,
    PRIMARY KEY (projection, position, event_id)
);
