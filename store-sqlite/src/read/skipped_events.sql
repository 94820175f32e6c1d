-- Oldest position first: the order of the table's key.
SELECT position, event_id, event_type, error, skipped_at
FROM skipped_events
WHERE name = ?1
ORDER BY position, event_id
