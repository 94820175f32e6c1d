INSERT INTO events (stream_id, version, event_id, event_type, payload, recorded_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6)
