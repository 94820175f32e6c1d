SELECT version, position, event_id, tables FROM {schema}.annals_projections WHERE name = $1
