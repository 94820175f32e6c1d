-- A page of the log after a position: what building the balances needs.
SELECT position, stream_id, event_type, payload
FROM __SCHEMA__.events WHERE position > $1 ORDER BY position LIMIT $2
