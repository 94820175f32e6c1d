-- Moves a projection's checkpoint; its tables list stays as `create` made it.
UPDATE annals_projections SET version = ?2, position = ?3, event_id = ?4 WHERE name = ?1
