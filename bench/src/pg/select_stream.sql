-- A stream's events in order: the columns annals' replay reads.
SELECT event_type, payload, position, version, schema_version
FROM __SCHEMA__.events WHERE stream_id = $1 ORDER BY version
