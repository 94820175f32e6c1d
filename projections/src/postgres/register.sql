-- A projection's row, as its tables were just created (or swapped in).
INSERT INTO {schema}.annals_projections (name, version, position, event_id, tables)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (name) DO UPDATE SET
    version = excluded.version,
    position = excluded.position,
    event_id = excluded.event_id,
    tables = excluded.tables
