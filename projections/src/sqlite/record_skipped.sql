-- An event given up on; recording it twice keeps one record.
INSERT OR IGNORE INTO annals_skipped_events
    (projection, position, event_id, event_type, error, skipped_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6)
