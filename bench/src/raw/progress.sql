-- How far the baseline's read model has read the log: one row, moved in the
-- transaction of each page, as a projection's checkpoint is.
CREATE TABLE progress (position INTEGER NOT NULL);
INSERT INTO progress (position) VALUES (0);
