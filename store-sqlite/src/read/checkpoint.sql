SELECT position, event_id, version FROM checkpoints WHERE name = ?1
