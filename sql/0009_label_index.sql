-- The label index (PromQL selectors, promql/selectors.py): every label pair of every series,
-- its source as `source` too (the name is the series key's first column already), so a
-- selector reads the series its matchers pick instead of every series of a name, and label
-- values come from the index. Kept by triggers, so every writer (workers, `db query`)
-- keeps it true; a series is written once, so pushes to existing series pay nothing.
CREATE TABLE series_labels (
    name      TEXT NOT NULL,
    value     TEXT NOT NULL,
    series_id INTEGER NOT NULL,
    PRIMARY KEY (name, value, series_id)
) WITHOUT ROWID;
INSERT INTO series_labels (name, value, series_id)
    SELECT 'source', source, id FROM series
    UNION ALL
    SELECT j.key, j.value, s.id FROM series s, json_each(s.labels) j WHERE s.labels != '';

CREATE TRIGGER series_labelled AFTER INSERT ON series
BEGIN
    INSERT INTO series_labels (name, value, series_id) VALUES ('source', NEW.source, NEW.id);
    INSERT INTO series_labels (name, value, series_id)
        SELECT key, value, NEW.id FROM json_each(NEW.labels) WHERE NEW.labels != '';
END;
-- By the whole key (the pairs are known): no scan by series.
CREATE TRIGGER series_unlabelled AFTER DELETE ON series
BEGIN
    DELETE FROM series_labels WHERE name = 'source' AND value = OLD.source
        AND series_id = OLD.id;
    DELETE FROM series_labels WHERE (name, value, series_id) IN
        (SELECT key, value, OLD.id FROM json_each(OLD.labels) WHERE OLD.labels != '');
END;
