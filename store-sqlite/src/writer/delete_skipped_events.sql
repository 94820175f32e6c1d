DELETE FROM skipped_events WHERE name = ?1
