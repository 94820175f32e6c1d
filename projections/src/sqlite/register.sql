-- A projection's row, as its tables were just created.
INSERT INTO annals_projections (name, version, position, event_id, tables)
VALUES (?1, ?2, 0, NULL, ?3)
ON CONFLICT (name) DO UPDATE SET
    version = excluded.version,
    position = 0,
    event_id = NULL,
    tables = excluded.tables
