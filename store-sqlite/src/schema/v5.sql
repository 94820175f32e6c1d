-- annals schema version 5: durable handlers' requests.
--
-- One row per (handler, event): the work a durable handler is to do for a
-- committed event, stored in the transaction that moved the handler's
-- checkpoint past the event. Never the payload: the event is read from the
-- log when the request runs.
CREATE TABLE handler_requests (
    id             INTEGER PRIMARY KEY,
    handler        TEXT    NOT NULL,
    -- The event id as a hyphenated UUID.
    event_id       TEXT    NOT NULL,
    position       INTEGER NOT NULL,
    event_type     TEXT    NOT NULL,
    stream_id      TEXT    NOT NULL,
    priority       INTEGER NOT NULL,
    ordering_key   TEXT,
    -- 0 pending (running while a claim holds), 2 done, 3 dead, 4 discarded.
    status         INTEGER NOT NULL,
    attempts       INTEGER NOT NULL,
    failures       INTEGER NOT NULL,
    -- The executor holding the claim, and when the claim expires
    -- (microseconds since the Unix epoch); NULL when unclaimed.
    claimed_by     TEXT,
    claim_expires  INTEGER,
    created_at     INTEGER NOT NULL,
    due_at         INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    discard_reason TEXT,
    UNIQUE (handler, event_id)
);

-- The claim order of pending requests: priority, then position.
CREATE INDEX handler_requests_due
    ON handler_requests (priority DESC, position, id) WHERE status = 0;

-- The pending requests of a handler and ordering key, in position order.
CREATE INDEX handler_requests_keys
    ON handler_requests (handler, ordering_key, position, id)
    WHERE status = 0 AND ordering_key IS NOT NULL;

-- Dead letters by the time they died.
CREATE INDEX handler_requests_changed ON handler_requests (status, updated_at);

-- Each failed attempt of a request, oldest first (by rowid).
CREATE TABLE handler_request_errors (
    request   INTEGER NOT NULL,
    attempt   INTEGER NOT NULL,
    error     TEXT    NOT NULL,
    failed_at INTEGER NOT NULL
);
CREATE INDEX handler_request_errors_request ON handler_request_errors (request);

UPDATE annals_meta SET value = '5' WHERE key = 'schema_version';
