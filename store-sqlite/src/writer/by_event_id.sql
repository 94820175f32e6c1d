SELECT position, stream_id, version, event_id, event_type, schema_version, payload, metadata, recorded_at
FROM events
WHERE event_id = ?1
