-- annals PostgreSQL schema version 2: a group of appends in one statement.
--
-- The writer sends each group of appends as one call of this function, in
-- a transaction of its own: one round trip, one commit. The function takes
-- the head lock, checks each append as the store contract says, numbers
-- the events of those that pass in order from the head, inserts them in
-- one statement, moves the head, sets the tracked checkpoints and, when
-- `channel` is given, notifies it of the new head.
--
-- It decides only what it can decide alone. When an event id of the group
-- is already stored (a retried append, or an id reused), it raises
-- SQLSTATE AN001 and writes nothing: the writer then decides the group
-- with the sequence every backend shares, which tells a retry from a reuse.
-- Since no id of the group is stored, a refused append is simply refused.
--
-- Per append: `a_streams` how many of the stream entries are its own, and
-- its tracked checkpoint (`a_track_*`, NULL name when none). Per stream
-- entry: the stream, the expected version (-1 any, -2 no stream, -3 the
-- stream exists, n >= 0 exactly n, 0 meaning no stream, -4 a version no
-- stream can have) and how many events it has. Per event, in order: its
-- stream and what is stored.
--
-- One row per append, in order: status 0 inserted (`first_position`, and
-- `bases`, each stream entry's version before it), 1 a conflict at its
-- stream entry `stream_index` (0-based, `detail` the stream's version or
-- NULL), 2 the tracked checkpoint is already at `detail`, 3 the versions of
-- stream entry `stream_index` would pass `max_version`.
CREATE FUNCTION __SCHEMA__.append_group(
    a_streams        integer[],
    a_track_name     text[],
    a_track_first    bigint[],
    a_track_position bigint[],
    a_track_event    uuid[],
    a_track_version  bigint[],
    s_stream         text[],
    s_expected       bigint[],
    s_events         integer[],
    e_stream         text[],
    e_id             uuid[],
    e_type           text[],
    e_schema         integer[],
    e_payload        text[],
    e_metadata       text[],
    recorded         bigint,
    max_version      bigint,
    channel          text,
    OUT status         smallint,
    OUT stream_index   integer,
    OUT detail         bigint,
    OUT first_position bigint,
    OUT bases          bigint[])
RETURNS SETOF record
LANGUAGE plpgsql
-- Plans made once: re-planning each statement at each call would cost more
-- than the whole append.
SET plan_cache_mode = force_generic_plan
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    head      bigint;
    start     bigint;
    -- The streams the group's passing appends wrote, and their versions.
    g_streams text[] := '{}';
    g_versions bigint[] := '{}';
    g         integer;
    positions bigint[] := array_fill(NULL::bigint, ARRAY[coalesce(array_length(e_id, 1), 0)]);
    event_versions bigint[] := array_fill(NULL::bigint, ARRAY[coalesce(array_length(e_id, 1), 0)]);
    si        integer := 1;
    ei        integer := 1;
    a         integer;
    k         integer;
    i         integer;
    j         integer;
    events    integer;
    current   bigint;
    expected  bigint;
    stored    bigint;
    refused   boolean;
    met       boolean;
BEGIN
    SELECT l.position INTO head FROM __SCHEMA__.log_head AS l WHERE l.one FOR UPDATE;
    start := head;
    IF EXISTS (SELECT 1 FROM __SCHEMA__.events AS e WHERE e.event_id = ANY (e_id)) THEN
        RAISE EXCEPTION USING ERRCODE = 'AN001',
            MESSAGE = 'an event id of the group is already stored';
    END IF;
    FOR a IN 1 .. coalesce(array_length(a_streams, 1), 0) LOOP
        status := NULL; stream_index := NULL; detail := NULL;
        first_position := NULL; bases := NULL;
        refused := false;
        events := 0;
        FOR k IN 0 .. a_streams[a] - 1 LOOP
            events := events + s_events[si + k];
        END LOOP;
        IF a_track_name[a] IS NOT NULL THEN
            SELECT c.position INTO stored FROM __SCHEMA__.checkpoints AS c
            WHERE c.name = a_track_name[a] FOR UPDATE;
            IF FOUND AND stored >= a_track_first[a] THEN
                status := 2; detail := stored; refused := true;
            END IF;
        END IF;
        IF NOT refused THEN
            bases := '{}';
            FOR k IN 0 .. a_streams[a] - 1 LOOP
                g := array_position(g_streams, s_stream[si + k]);
                IF g IS NULL THEN
                    SELECT max(e.version) INTO current FROM __SCHEMA__.events AS e
                    WHERE e.stream_id = s_stream[si + k];
                ELSE
                    current := g_versions[g];
                END IF;
                expected := s_expected[si + k];
                met := CASE
                    WHEN expected = -1 THEN true
                    WHEN expected = -2 OR expected = 0 THEN current IS NULL
                    WHEN expected = -3 THEN current IS NOT NULL
                    WHEN expected > 0 THEN coalesce(current = expected, false)
                    ELSE false
                END;
                IF NOT met THEN
                    status := 1; stream_index := k; detail := current; refused := true;
                    EXIT;
                END IF;
                IF s_events[si + k] > max_version - coalesce(current, 0) THEN
                    status := 3; stream_index := k; refused := true;
                    EXIT;
                END IF;
                bases := bases || coalesce(current, 0);
            END LOOP;
        END IF;
        IF NOT refused THEN
            status := 0;
            first_position := head + 1;
            FOR k IN 0 .. a_streams[a] - 1 LOOP
                g := array_position(g_streams, s_stream[si + k]);
                IF g IS NULL THEN
                    g_streams := g_streams || s_stream[si + k];
                    g_versions := g_versions || (bases[k + 1] + s_events[si + k]);
                ELSE
                    g_versions[g] := bases[k + 1] + s_events[si + k];
                END IF;
            END LOOP;
            i := ei;
            FOR k IN 0 .. a_streams[a] - 1 LOOP
                FOR j IN 1 .. s_events[si + k] LOOP
                    head := head + 1;
                    positions[i] := head;
                    event_versions[i] := bases[k + 1] + j;
                    i := i + 1;
                END LOOP;
            END LOOP;
            IF a_track_name[a] IS NOT NULL THEN
                INSERT INTO __SCHEMA__.checkpoints AS c (name, position, event_id, version, saved_at)
                VALUES (a_track_name[a], a_track_position[a], a_track_event[a],
                        a_track_version[a], recorded)
                ON CONFLICT (name) DO UPDATE SET position = excluded.position,
                    event_id = excluded.event_id, version = excluded.version,
                    saved_at = excluded.saved_at;
            END IF;
        END IF;
        si := si + a_streams[a];
        ei := ei + events;
        RETURN NEXT;
    END LOOP;

    IF head > start THEN
        INSERT INTO __SCHEMA__.events (position, stream_id, version, event_id, event_type,
                                      schema_version, payload, metadata, recorded_at)
        SELECT r.position, r.stream_id, r.version, r.event_id, r.event_type,
               r.schema_version, r.payload, r.metadata, recorded
        FROM unnest(positions, e_stream, event_versions, e_id, e_type, e_schema, e_payload, e_metadata)
             AS r(position, stream_id, version, event_id, event_type, schema_version, payload,
                  metadata)
        WHERE r.position IS NOT NULL;
        UPDATE __SCHEMA__.log_head SET position = head WHERE one;
        IF channel IS NOT NULL THEN
            PERFORM pg_notify(channel, head::text);
        END IF;
    END IF;
END
$$;

UPDATE __SCHEMA__.annals_meta SET value = '2' WHERE key = 'schema_version';
