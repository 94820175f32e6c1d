SELECT position, stream_id, version, event_id, event_type, schema_version, payload, metadata, recorded_at
FROM events
WHERE stream_id = ?1 AND version >= ?2
ORDER BY version ASC
LIMIT ?3
