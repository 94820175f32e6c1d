-- Moves the follower's checkpoint forward: a lower position leaves it as
-- it is (a follower that lags behind another never moves it back; a reset
-- deletes the row, and then any position goes).
INSERT INTO checkpoints (name, position, event_id, version, saved_at)
VALUES (?1, ?2, ?3, ?4, ?5)
ON CONFLICT (name) DO UPDATE SET
    position = excluded.position,
    event_id = excluded.event_id,
    version = excluded.version,
    saved_at = excluded.saved_at
WHERE excluded.position >= checkpoints.position
