-- A group of appends to distinct streams, none tracking a checkpoint, in
-- one statement: the common case, with no procedural step.
--
-- The statement reads with the snapshot it started with, and takes the
-- head lock in `locked`: if another append committed in between (the head
-- it locked is not the head its snapshot sees), what it read may be out of
-- date, and it writes nothing and answers no row; so it does too when an
-- event id of a refused append is already stored, and it fails on the
-- unique key when one of a passing append is. The writer then decides the
-- group another way. Otherwise it answers one row per append, as
-- `append_group` does: status 0 inserted (first position, and the version
-- of each stream entry before it), 1 a conflict at entry `stream_index`
-- (`detail` the stream's version or NULL), 3 an entry's versions would pass
-- the largest.
--
-- $1 the stream entries' streams, $2 their expected versions (as for
-- `append_group`), $3 their event counts, $4 the (1-based) append each is
-- part of; $5 each event's (1-based) stream entry, $6 its (1-based) place
-- in the entry, $7 to $11 what is stored; $12 recorded_at, $13 the largest
-- version, $14 the channel to notify (NULL: none).
WITH locked AS (
    SELECT l.position FROM __SCHEMA__.log_head AS l WHERE l.one FOR UPDATE
),
fresh AS (
    SELECT locked.position AS head FROM locked
    WHERE locked.position = (SELECT l.position FROM __SCHEMA__.log_head AS l WHERE l.one)
),
checked AS (
    SELECT x.ord, x.stream_id, x.append, v.current,
           CASE
               WHEN x.expected = -1 THEN true
               WHEN x.expected = -2 OR x.expected = 0 THEN v.current IS NULL
               WHEN x.expected = -3 THEN v.current IS NOT NULL
               WHEN x.expected > 0 THEN coalesce(v.current = x.expected, false)
               ELSE false
           END AS met,
           x.events > $13::bigint - coalesce(v.current, 0) AS overflow
    FROM fresh,
         unnest($1::text[], $2::bigint[], $3::int4[], $4::int4[])
             WITH ORDINALITY AS x(stream_id, expected, events, append, ord)
         CROSS JOIN LATERAL (
             SELECT max(e.version) AS current FROM __SCHEMA__.events AS e
             WHERE e.stream_id = x.stream_id) AS v
),
appends AS (
    SELECT c.append,
           bool_and(c.met AND NOT c.overflow) AS pass,
           min(c.ord) AS first_entry,
           min(c.ord) FILTER (WHERE NOT c.met OR c.overflow) AS failed_entry,
           array_agg(coalesce(c.current, 0) ORDER BY c.ord) AS bases
    FROM checked AS c GROUP BY c.append
),
-- Whether a refused append's ids are stored: it may be a retry of an
-- append committed before, which only the writer's other ways can tell.
-- (A passing append's stored id fails the insert on its unique key.)
refused_stored AS (
    SELECT EXISTS (
        SELECT 1
        FROM unnest($5::int4[], $7::uuid[]) AS ev(entry, event_id)
             JOIN checked AS c ON c.ord = ev.entry
             JOIN appends AS a ON a.append = c.append AND NOT a.pass
             JOIN __SCHEMA__.events AS e ON e.event_id = ev.event_id
    ) AS stored
),
rows AS (
    SELECT c.append,
           fresh.head + row_number() OVER (ORDER BY ev.ord) AS position,
           c.stream_id, coalesce(c.current, 0) + ev.place AS version,
           ev.event_id, ev.event_type, ev.schema_version, ev.payload, ev.metadata
    FROM fresh,
         unnest($5::int4[], $6::int4[], $7::uuid[], $8::text[], $9::int4[], $10::text[],
                $11::text[])
             WITH ORDINALITY AS ev(entry, place, event_id, event_type, schema_version, payload,
                                   metadata, ord)
         JOIN checked AS c ON c.ord = ev.entry
         JOIN appends AS a ON a.append = c.append AND a.pass
    WHERE NOT (SELECT s.stored FROM refused_stored AS s)
),
inserted AS (
    INSERT INTO __SCHEMA__.events (position, stream_id, version, event_id, event_type,
                                  schema_version, payload, metadata, recorded_at)
    SELECT r.position, r.stream_id, r.version, r.event_id, r.event_type, r.schema_version,
           r.payload, r.metadata, $12::bigint
    FROM rows AS r
),
moved AS (
    UPDATE __SCHEMA__.log_head SET position = (SELECT max(r.position) FROM rows AS r)
    WHERE one AND EXISTS (SELECT 1 FROM rows)
    RETURNING position
),
notified AS (
    SELECT pg_notify($14::text, moved.position::text) FROM moved WHERE $14::text IS NOT NULL
)
SELECT CASE WHEN a.pass THEN 0 WHEN f.met THEN 3 ELSE 1 END::smallint AS status,
       (a.failed_entry - a.first_entry)::int4 AS stream_index,
       f.current AS detail,
       (SELECT min(r.position) FROM rows AS r WHERE r.append = a.append) AS first_position,
       a.bases,
       (SELECT count(*) FROM notified) AS notified
FROM appends AS a LEFT JOIN checked AS f ON f.ord = a.failed_entry
WHERE NOT (SELECT s.stored FROM refused_stored AS s)
ORDER BY a.append
