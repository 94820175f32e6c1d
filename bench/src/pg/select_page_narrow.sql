-- A page of the log after a position: its positions, types and payloads
-- only, less than a reader of the log needs.
SELECT position, event_type, payload
FROM __SCHEMA__.events WHERE position > $1 ORDER BY position LIMIT $2
