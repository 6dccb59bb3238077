-- Staleness markers: where a remote_write sender said a series ended (the special NaN
-- Prometheus writes when a series leaves a scrape or its target goes away). PromQL ends the
-- series there, as Prometheus does (promql/selectors.py); nothing else reads them. A series
-- ends rarely, so they are rows of their own rather than samples (whose value is a number).
CREATE TABLE stale_markers (
    series_id INTEGER NOT NULL,
    timestamp INTEGER NOT NULL,
    PRIMARY KEY (series_id, timestamp)
) WITHOUT ROWID;
-- A forgotten series takes its markers along (its id may be given to a new series).
CREATE TRIGGER stale_markers_forgotten AFTER DELETE ON series
BEGIN
    DELETE FROM stale_markers WHERE series_id = OLD.id;
END;
