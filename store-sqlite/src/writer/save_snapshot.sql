-- Keeps the newest snapshot of each stream: an older one never replaces it.
INSERT INTO snapshots (stream_id, version, state_version, state, taken_at)
VALUES (?1, ?2, ?3, ?4, ?5)
ON CONFLICT (stream_id) DO UPDATE SET
    version = excluded.version,
    state_version = excluded.state_version,
    state = excluded.state,
    taken_at = excluded.taken_at
WHERE excluded.version >= snapshots.version
