-- One append to one stream, tracking no checkpoint: the commonest group,
-- as one lean statement.
--
-- Its reads use the snapshot it started with. Its one write to the head
-- is also the lock, and it only takes place if the head is still the one
-- the snapshot saw: when another append committed in between, the
-- `UPDATE` finds the head moved, writes nothing, and the statement answers
-- no row; the writer then decides the append another way. So, too, when
-- a refused append's event id is already stored (`ids_stored`); a passing
-- one's fails the insert on its unique key. A refusal
-- still locks and moves the head by nothing, so that it is known to be
-- decided on the log as it is.
--
-- $1 the stream, $2 the expected version (as for `append_group`), $3 the
-- number of events; $4 to $8 the events' ids, types, schema versions,
-- payloads and metadata; $9 recorded_at, $10 the largest version, $11 the
-- channel to notify (NULL: none).
WITH current AS (
    SELECT max(e.version) AS version FROM __SCHEMA__.events AS e WHERE e.stream_id = $1::text
),
checked AS (
    SELECT c.version,
           CASE
               WHEN $2::bigint = -1 THEN true
               WHEN $2::bigint = -2 OR $2::bigint = 0 THEN c.version IS NULL
               WHEN $2::bigint = -3 THEN c.version IS NOT NULL
               WHEN $2::bigint > 0 THEN coalesce(c.version = $2::bigint, false)
               ELSE false
           END AS met,
           $3::int4 > $10::bigint - coalesce(c.version, 0) AS overflow
    FROM current AS c
),
-- Only a refusal looks its ids up: a passing append's stored id fails the
-- insert on its unique key.
verdict AS (
    SELECT c.version, c.met, c.overflow,
           CASE WHEN c.met AND NOT c.overflow THEN false
                ELSE EXISTS (SELECT 1 FROM __SCHEMA__.events AS e
                             WHERE e.event_id = ANY ($4::uuid[]))
           END AS ids_stored
    FROM checked AS c
),
moved AS (
    UPDATE __SCHEMA__.log_head AS l
    SET position = l.position + CASE WHEN v.met AND NOT v.overflow THEN $3::int4 ELSE 0 END
    FROM verdict AS v
    WHERE l.one AND NOT v.ids_stored
      AND l.position = (SELECT h.position FROM __SCHEMA__.log_head AS h WHERE h.one)
    RETURNING l.position AS head, v.version, v.met, v.overflow
),
inserted AS (
    INSERT INTO __SCHEMA__.events (position, stream_id, version, event_id, event_type,
                                  schema_version, payload, metadata, recorded_at)
    SELECT m.head - $3::int4 + ev.place, $1::text, coalesce(m.version, 0) + ev.place,
           ev.event_id, ev.event_type, ev.schema_version, ev.payload, ev.metadata, $9::bigint
    FROM moved AS m,
         unnest($4::uuid[], $5::text[], $6::int4[], $7::text[], $8::text[])
             WITH ORDINALITY AS ev(event_id, event_type, schema_version, payload, metadata, place)
    WHERE m.met AND NOT m.overflow
),
notified AS (
    SELECT pg_notify($11::text, m.head::text) FROM moved AS m
    WHERE m.met AND NOT m.overflow AND $11::text IS NOT NULL
)
SELECT CASE WHEN NOT m.met THEN 1 WHEN m.overflow THEN 3 ELSE 0 END::smallint AS status,
       CASE WHEN m.met AND NOT m.overflow THEN NULL ELSE 0 END::int4 AS stream_index,
       m.version AS detail,
       CASE WHEN m.met AND NOT m.overflow THEN m.head - $3::int4 + 1 END AS first_position,
       ARRAY[coalesce(m.version, 0)] AS bases,
       (SELECT count(*) FROM notified) AS notified
FROM moved AS m
