-- One event of a stream: a row the first time, then one more event and its
-- amount added.
INSERT INTO balances (stream_id, events, total) VALUES (?1, 1, ?2)
ON CONFLICT (stream_id) DO UPDATE SET events = events + 1, total = total + excluded.total
