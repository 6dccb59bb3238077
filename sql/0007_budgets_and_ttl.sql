-- Series budgets (store/budgets.py): the series stored per source, kept by triggers so
-- every writer (and `db query`) keeps it true. A series counts until it is deleted (the
-- purge forgets series whose samples aged out).
CREATE TABLE source_series (
    source TEXT PRIMARY KEY,
    series INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO source_series (source, series) SELECT source, count(*) FROM series GROUP BY source;

CREATE TRIGGER series_counted AFTER INSERT ON series
BEGIN
    INSERT INTO source_series (source, series) VALUES (NEW.source, 1)
        ON CONFLICT (source) DO UPDATE SET series = series + 1;
END;
CREATE TRIGGER series_uncounted AFTER DELETE ON series
BEGIN
    UPDATE source_series SET series = series - 1 WHERE source = OLD.source;
END;

-- A Pushgateway-API group's own time to live (`?ttl=` on its last push), in seconds;
-- NULL: METRICS_GROUP_TTL applies.
ALTER TABLE push_groups ADD COLUMN ttl REAL;
