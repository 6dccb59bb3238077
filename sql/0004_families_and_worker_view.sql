-- Metric families with the TYPE and HELP they were pushed with (the Pushgateway API's text
-- format, remote_write metadata). A metric name no family declares is a gauge of its own.
CREATE TABLE families (
    name TEXT PRIMARY KEY,
    type TEXT NOT NULL CHECK (type IN ('counter', 'gauge', 'histogram', 'summary', 'untyped')),
    help TEXT NOT NULL DEFAULT ''
);

-- When a Pushgateway-API push to the group was last refused (push_failure_time_seconds);
-- 0 until then. A group made by a refused push has pushed_at 0, as the Pushgateway's has.
ALTER TABLE push_groups ADD COLUMN failed_at REAL NOT NULL DEFAULT 0;

-- The Worker's table again, with created_at as INTEGER Unix seconds as D1 had it (the sample
-- time: receipt time is not stored per sample).
DROP VIEW metrics;
CREATE VIEW metrics AS
SELECT (x.series_id << 32) | x.timestamp     AS id,
       s.source                              AS source,
       x.timestamp                           AS timestamp,
       s.metric_name                         AS metric_name,
       x.value                               AS metric_value,
       x.timestamp                           AS created_at,
       NULLIF(s.labels, '')                  AS labels
FROM samples x JOIN series s ON s.id = x.series_id;

-- Samples deleted through the view, counted for `db query` (SQLite counts no changes for a
-- statement on a view).
CREATE TABLE metrics_deleted (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    count INTEGER NOT NULL
);
INSERT INTO metrics_deleted (id, count) VALUES (1, 0);

-- The Worker's manual cleanup (`DELETE FROM metrics WHERE timestamp < ...`) deletes the
-- samples; a series whose newest sample went gets the newest one left as its latest, or no
-- latest row when none is left. Each subquery scans the samples key backwards from the
-- deleted timestamp.
CREATE TRIGGER metrics_delete INSTEAD OF DELETE ON metrics
BEGIN
    DELETE FROM samples WHERE timestamp = OLD.timestamp AND series_id = OLD.id >> 32;
    UPDATE latest
       SET value = coalesce((SELECT x.value FROM samples x
                             WHERE x.series_id = latest.series_id AND x.timestamp < OLD.timestamp
                             ORDER BY x.timestamp DESC LIMIT 1), 0),
           timestamp = coalesce((SELECT x.timestamp FROM samples x
                                 WHERE x.series_id = latest.series_id
                                   AND x.timestamp < OLD.timestamp
                                 ORDER BY x.timestamp DESC LIMIT 1), -1)
     WHERE series_id = OLD.id >> 32 AND timestamp = OLD.timestamp;
    DELETE FROM latest WHERE series_id = OLD.id >> 32 AND timestamp = -1;
    UPDATE metrics_deleted SET count = count + 1;
END;
