-- A small write whose commit, with synchronous = FULL, syncs the WAL and
-- with it every commit before it.
INSERT INTO annals_meta (key, value) VALUES ('synced_at', ?1)
ON CONFLICT (key) DO UPDATE SET value = excluded.value
