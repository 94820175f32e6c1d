-- annals schema version 3: indexes that serve filtered reads of the log.
--
-- A category or event type filter walks its index in position order from
-- the reader's start and stops after a page of matches, so a filtered read
-- costs about a page of index entries however rare its matches are.
-- The category expression must read exactly as the queries spell it.
CREATE INDEX events_by_category
    ON events (substr(stream_id, 1, instr(stream_id, '-') - 1), position);

CREATE INDEX events_by_type ON events (event_type, position);

UPDATE annals_meta SET value = '3' WHERE key = 'schema_version';
