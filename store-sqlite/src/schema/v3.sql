-- annals schema version 3: an index that serves filtered reads of the log.
--
-- A category filter walks this index in position order from the reader's
-- start and stops after a page of matches, so a filtered read costs about a
-- page of index entries however rare its matches are. (Every index is one
-- more page written by each commit, so event types get none: a filter on
-- types alone walks the log in position order.) The category expression
-- must read exactly as the queries spell it.
CREATE INDEX events_by_category
    ON events (substr(stream_id, 1, instr(stream_id, '-') - 1), position);

UPDATE annals_meta SET value = '3' WHERE key = 'schema_version';
