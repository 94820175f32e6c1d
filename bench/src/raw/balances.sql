-- The read model of the projection scenarios, built alike by annals and by
-- the baseline: per stream, how many events it has had and the sum of its
-- deposits.
CREATE TABLE balances (
    stream_id TEXT    PRIMARY KEY NOT NULL,
    events    INTEGER NOT NULL,
    total     INTEGER NOT NULL
);
