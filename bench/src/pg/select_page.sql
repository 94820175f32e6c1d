-- A page of the log after a position, with every column annals returns
-- for an event (in the order of the bench's `ENVELOPE_COLUMNS`).
SELECT event_type, payload, position, stream_id, version, event_id, schema_version, metadata,
       recorded_at
FROM __SCHEMA__.events WHERE position > $1 ORDER BY position LIMIT $2
