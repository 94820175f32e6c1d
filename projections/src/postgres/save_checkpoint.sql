-- Moves a projection's checkpoint on from where this runner last committed
-- it ($5). If another runner moved it meanwhile, no row matches, and the
-- batch is rolled back rather than applied twice.
UPDATE {schema}.annals_projections SET version = $2, position = $3, event_id = $4
WHERE name = $1 AND position = $5
