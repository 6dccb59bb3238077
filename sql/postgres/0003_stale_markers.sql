-- Staleness markers (sql/0008_stale_markers.sql): where a remote_write sender said a series
-- ended. Ids are never given again, so the markers of a forgotten series go at the purge's
-- finishing step rather than by a trigger.
CREATE TABLE stale_markers (
    series_id bigint NOT NULL,
    timestamp bigint NOT NULL,
    PRIMARY KEY (series_id, timestamp)
);
