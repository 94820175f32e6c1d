-- The relations of the model in schema $1, with their kinds: tables,
-- views and the sequences no column owns (indexes, and sequences a column
-- owns, go with their tables), leaving out the runner's own tables.
SELECT c.relname::text, c.relkind::text
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1
  AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
  AND c.relname NOT IN ('annals_projections', 'annals_skipped_events')
  AND NOT (c.relkind = 'S' AND EXISTS (
      SELECT 1 FROM pg_catalog.pg_depend d
      WHERE d.classid = 'pg_catalog.pg_class'::regclass
        AND d.objid = c.oid
        AND d.deptype IN ('a', 'i')))
ORDER BY c.relname
