-- An event given up on; recording it twice keeps one record.
INSERT INTO {schema}.annals_skipped_events
    (projection, position, event_id, event_type, error, skipped_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT DO NOTHING
