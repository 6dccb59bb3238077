-- Series budgets (store/budgets.py): the series stored per source, kept by statement
-- triggers so every writer keeps it true. A series counts until it is deleted.
CREATE TABLE source_series (
    source text PRIMARY KEY,
    series bigint NOT NULL
);
INSERT INTO source_series (source, series) SELECT source, count(*) FROM series GROUP BY source;

CREATE FUNCTION series_counted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO source_series (source, series)
    SELECT source, count(*) FROM created GROUP BY source ORDER BY source
    ON CONFLICT (source) DO UPDATE SET series = source_series.series + excluded.series;
    RETURN NULL;
END $$;
CREATE TRIGGER series_counted AFTER INSERT ON series REFERENCING NEW TABLE AS created
    FOR EACH STATEMENT EXECUTE FUNCTION series_counted();

CREATE FUNCTION series_uncounted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE source_series c SET series = c.series - d.n
      FROM (SELECT source, count(*) AS n FROM deleted GROUP BY source) d
     WHERE c.source = d.source;
    RETURN NULL;
END $$;
CREATE TRIGGER series_uncounted AFTER DELETE ON series REFERENCING OLD TABLE AS deleted
    FOR EACH STATEMENT EXECUTE FUNCTION series_uncounted();

-- A Pushgateway-API group's own time to live (`?ttl=` on its last push), in seconds;
-- NULL: METRICS_GROUP_TTL applies.
ALTER TABLE push_groups ADD COLUMN ttl double precision;
