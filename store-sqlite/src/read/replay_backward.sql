-- Only what replaying an aggregate needs: fewer columns to read per row.
SELECT position, version, event_type, schema_version, payload
FROM events
WHERE stream_id = ?1 AND version <= ?2
ORDER BY version DESC
LIMIT ?3
