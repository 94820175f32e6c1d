SELECT position, event_id, event_type, error, skipped_at
FROM {schema}.annals_skipped_events WHERE projection = $1
ORDER BY position, event_id
