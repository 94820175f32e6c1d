SELECT version, state_version, state, taken_at FROM snapshots WHERE stream_id = ?1
