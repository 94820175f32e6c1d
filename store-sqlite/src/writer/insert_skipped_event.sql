-- An event already recorded for the follower keeps its first record.
INSERT OR IGNORE INTO skipped_events (name, position, event_id, event_type, error, skipped_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6)
