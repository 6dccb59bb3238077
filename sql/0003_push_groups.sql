-- Pushgateway-style groups (PUT/POST/DELETE /metrics/job/<job>{/<label>/<value>}).
-- A group is (source = job, grouping labels); group_series holds the series it exports now,
-- each with the metric family it was pushed in (POST replaces whole families).
CREATE TABLE push_groups (
    id        INTEGER PRIMARY KEY,
    source    TEXT NOT NULL,
    grouping  TEXT NOT NULL,      -- canonical JSON of the path labels, '' if none
    pushed_at REAL NOT NULL,
    UNIQUE (source, grouping)
);

CREATE TABLE group_series (
    group_id  INTEGER NOT NULL,
    series_id INTEGER NOT NULL,
    family    TEXT NOT NULL,
    PRIMARY KEY (group_id, series_id)
) WITHOUT ROWID;

-- pinned: a current member of a push group, exported whatever its age and without a
-- timestamp (the Pushgateway's semantics). hidden: removed from its group by a later PUT, POST
-- or DELETE; not exported until pushed again. Stored samples stay until retention either way.
ALTER TABLE latest ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0;
ALTER TABLE latest ADD COLUMN hidden INTEGER NOT NULL DEFAULT 0;
