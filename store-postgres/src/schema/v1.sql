-- annals PostgreSQL schema version 1: the event log, the head that orders
-- it, snapshots, followers' checkpoints and durable handlers' requests.
--
-- `__SCHEMA__` stands for the store's schema name, validated and quoted.
-- Names and stream ids use the "C" collation: they compare byte for byte,
-- as on every other backend.
CREATE TABLE __SCHEMA__.annals_meta (
    key   text COLLATE "C" PRIMARY KEY,
    value text NOT NULL
);

-- One row: the position of the newest committed event. Every append locks
-- it (`FOR UPDATE`) before it assigns positions, and holds the lock until it
-- commits, so positions are assigned in commit order and a reader never
-- finds an event committing below one it has seen.
CREATE TABLE __SCHEMA__.log_head (
    one      boolean PRIMARY KEY DEFAULT true CHECK (one),
    position bigint  NOT NULL CHECK (position >= 0)
);
INSERT INTO __SCHEMA__.log_head (one, position) VALUES (true, 0);

CREATE TABLE __SCHEMA__.events (
    position       bigint  PRIMARY KEY,
    stream_id      text    COLLATE "C" NOT NULL,
    version        bigint  NOT NULL,
    event_id       uuid    NOT NULL UNIQUE,
    event_type     text    COLLATE "C" NOT NULL,
    schema_version integer NOT NULL,
    -- The JSON text as written, byte for byte.
    payload        text    NOT NULL,
    -- NULL when the event has no metadata.
    metadata       text,
    -- Microseconds since the Unix epoch, set by the store.
    recorded_at    bigint  NOT NULL,
    UNIQUE (stream_id, version)
);

-- Category filters walk this index in position order from the reader's
-- start. The category is the stream id up to its first '-' (the whole id
-- when it has none); the expression must read exactly as queries spell it.
CREATE INDEX events_by_category
    ON __SCHEMA__.events ((split_part(stream_id, '-', 1)), position);

-- The log is append-only: nothing may change or remove an event.
CREATE FUNCTION __SCHEMA__.events_are_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'annals events are append-only';
END
$$;
CREATE TRIGGER events_are_never_changed
    BEFORE UPDATE OR DELETE ON __SCHEMA__.events
    FOR EACH ROW EXECUTE FUNCTION __SCHEMA__.events_are_append_only();
CREATE TRIGGER events_are_never_truncated
    BEFORE TRUNCATE ON __SCHEMA__.events
    FOR EACH STATEMENT EXECUTE FUNCTION __SCHEMA__.events_are_append_only();

-- Aggregate snapshots, a cache beside the log.
CREATE TABLE __SCHEMA__.snapshots (
    stream_id     text    COLLATE "C" PRIMARY KEY,
    version       bigint  NOT NULL,
    state_version integer NOT NULL,
    state         text    NOT NULL,
    taken_at      bigint  NOT NULL
);

-- Where followers of the log keep their place, with the id of the event at
-- that position (NULL at the start of the log).
CREATE TABLE __SCHEMA__.checkpoints (
    name     text    COLLATE "C" PRIMARY KEY,
    position bigint  NOT NULL,
    event_id uuid,
    version  bigint  NOT NULL,
    saved_at bigint  NOT NULL
);

-- The events a follower gave up on, saved with the checkpoint that moved
-- past them; never their payload.
CREATE TABLE __SCHEMA__.skipped_events (
    name       text   COLLATE "C" NOT NULL,
    position   bigint NOT NULL,
    event_id   uuid   NOT NULL,
    event_type text   NOT NULL,
    error      text   NOT NULL,
    skipped_at bigint NOT NULL,
    PRIMARY KEY (name, position, event_id)
);

-- Durable handlers' requests: one row per (handler, event), stored in the
-- transaction that moved the handler's checkpoint past the event.
CREATE TABLE __SCHEMA__.handler_requests (
    id             bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    handler        text    COLLATE "C" NOT NULL,
    event_id       uuid    NOT NULL,
    position       bigint  NOT NULL,
    event_type     text    COLLATE "C" NOT NULL,
    stream_id      text    COLLATE "C" NOT NULL,
    priority       integer NOT NULL,
    ordering_key   text    COLLATE "C",
    -- 0 pending (running while a claim holds), 2 done, 3 dead, 4 discarded.
    status         smallint NOT NULL,
    attempts       integer NOT NULL,
    failures       integer NOT NULL,
    claimed_by     text,
    claim_expires  bigint,
    created_at     bigint  NOT NULL,
    due_at         bigint  NOT NULL,
    updated_at     bigint  NOT NULL,
    discard_reason text,
    UNIQUE (handler, event_id)
);

-- The claim order of pending requests: priority, then position.
CREATE INDEX handler_requests_due
    ON __SCHEMA__.handler_requests (priority DESC, position, id) WHERE status = 0;

-- The pending requests of a handler and ordering key, in position order.
CREATE INDEX handler_requests_keys
    ON __SCHEMA__.handler_requests (handler, ordering_key, position, id)
    WHERE status = 0 AND ordering_key IS NOT NULL;

-- Dead letters by the time they died.
CREATE INDEX handler_requests_changed ON __SCHEMA__.handler_requests (status, updated_at);

-- Each failed attempt of a request, oldest first.
CREATE TABLE __SCHEMA__.handler_request_errors (
    seq       bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request   bigint  NOT NULL,
    attempt   integer NOT NULL,
    error     text    NOT NULL,
    failed_at bigint  NOT NULL
);
CREATE INDEX handler_request_errors_request ON __SCHEMA__.handler_request_errors (request, seq);

INSERT INTO __SCHEMA__.annals_meta (key, value) VALUES ('format', 'annals');
INSERT INTO __SCHEMA__.annals_meta (key, value) VALUES ('schema_version', '1');
