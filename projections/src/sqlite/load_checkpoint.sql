SELECT version, position, event_id, tables FROM annals_projections WHERE name = ?1
