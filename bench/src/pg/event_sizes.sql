-- The mean payload and metadata sizes of a log's events, in bytes.
SELECT coalesce(avg(octet_length(payload)), 0)::float8,
       coalesce(avg(octet_length(metadata)), 0)::float8
FROM __SCHEMA__.events
