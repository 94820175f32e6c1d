-- The baseline's copy of annals' log, row for row, for the read scenarios.
INSERT INTO __SCHEMA__.events
SELECT position, stream_id, version, event_id, event_type, schema_version, payload, metadata,
       recorded_at
FROM __OURS__.events ORDER BY position
