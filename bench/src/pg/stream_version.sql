SELECT max(version) FROM __SCHEMA__.events WHERE stream_id = $1
