-- Normalised layout, chosen by bench/layouts.py (see README "Storage"):
--  * series: one row per (metric name, source, label set); labels are sorted-key JSON, '' if none.
--  * samples: one row per (timestamp, series), WITHOUT ROWID and keyed by time first, so inserts
--    append, window reads are range scans, and the retention purge deletes a leading range.
--    Pushing the same (series, timestamp) again replaces the value: retries never duplicate.
--  * latest: the newest sample of each series, kept by the writer, so /metrics and /api/sources
--    never scan history.
CREATE TABLE series (
    id          INTEGER PRIMARY KEY,
    metric_name TEXT NOT NULL,
    source      TEXT NOT NULL,
    labels      TEXT NOT NULL DEFAULT '',
    UNIQUE (metric_name, source, labels)
);

CREATE TABLE samples (
    timestamp INTEGER NOT NULL,
    series_id INTEGER NOT NULL,
    value     REAL NOT NULL,
    PRIMARY KEY (timestamp, series_id)
) WITHOUT ROWID;

CREATE TABLE latest (
    series_id INTEGER PRIMARY KEY,
    timestamp INTEGER NOT NULL,
    value     REAL NOT NULL
);

-- The Worker's D1 table, as a view: `SELECT * FROM metrics` keeps working.
-- id is derived (series id in the high bits, timestamp in the low 32) and stable;
-- created_at is the sample time: receipt time is not stored per sample (it would cost ~5 B/sample).
CREATE VIEW metrics AS
SELECT (x.series_id << 32) | x.timestamp     AS id,
       s.source                              AS source,
       x.timestamp                           AS timestamp,
       s.metric_name                         AS metric_name,
       x.value                               AS metric_value,
       datetime(x.timestamp, 'unixepoch')    AS created_at,
       NULLIF(s.labels, '')                  AS labels
FROM samples x JOIN series s ON s.id = x.series_id;
