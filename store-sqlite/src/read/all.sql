-- ?2 and ?3 bound a range of stream ids (a category or prefix filter, compared
-- byte for byte, never with LIKE); ?4 is a JSON array of event types. Each is
-- NULL when the filter is not set.
SELECT position, stream_id, version, event_id, event_type, schema_version, payload, metadata, recorded_at
FROM events
WHERE position > ?1
  AND (?2 IS NULL OR stream_id >= ?2)
  AND (?3 IS NULL OR stream_id < ?3)
  AND (?4 IS NULL OR event_type IN (SELECT value FROM json_each(?4)))
ORDER BY position ASC
LIMIT ?5
