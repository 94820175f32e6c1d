-- Replaces the follower's checkpoint, whatever its position: a rebuild
-- starts again lower.
INSERT INTO checkpoints (name, position, event_id, version, saved_at)
VALUES (?1, ?2, ?3, ?4, ?5)
ON CONFLICT (name) DO UPDATE SET
    position = excluded.position,
    event_id = excluded.event_id,
    version = excluded.version,
    saved_at = excluded.saved_at
