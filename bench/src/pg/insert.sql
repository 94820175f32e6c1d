INSERT INTO __SCHEMA__.events
    (stream_id, version, event_id, event_type, schema_version, payload, metadata, recorded_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
