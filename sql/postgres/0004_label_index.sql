-- The label index (sql/0009_label_index.sql): every label pair of every series, its source
-- as `source` too, kept by statement triggers over the rows a statement inserted or deleted.
CREATE TABLE series_labels (
    name      text NOT NULL,
    value     text NOT NULL,
    series_id bigint NOT NULL,
    PRIMARY KEY (name, value, series_id)
);
INSERT INTO series_labels (name, value, series_id)
    SELECT 'source', source, id FROM series
    UNION ALL
    SELECT j.key, j.value, s.id FROM series s, jsonb_each_text(s.labels::jsonb) j
     WHERE s.labels <> '';

CREATE FUNCTION series_labelled() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO series_labels (name, value, series_id)
    SELECT 'source', source, id FROM created
    UNION ALL
    SELECT j.key, j.value, c.id FROM created c, jsonb_each_text(c.labels::jsonb) j
     WHERE c.labels <> '';
    RETURN NULL;
END $$;
CREATE TRIGGER series_labelled AFTER INSERT ON series REFERENCING NEW TABLE AS created
    FOR EACH STATEMENT EXECUTE FUNCTION series_labelled();

CREATE FUNCTION series_unlabelled() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM series_labels l
     USING (SELECT 'source' AS name, source AS value, id FROM deleted
            UNION ALL
            SELECT j.key, j.value, d.id FROM deleted d, jsonb_each_text(d.labels::jsonb) j
             WHERE d.labels <> '') x
     WHERE l.name = x.name AND l.value = x.value AND l.series_id = x.id;
    RETURN NULL;
END $$;
CREATE TRIGGER series_unlabelled AFTER DELETE ON series REFERENCING OLD TABLE AS deleted
    FOR EACH STATEMENT EXECUTE FUNCTION series_unlabelled();

CREATE FUNCTION series_labels_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE series_labels;
    RETURN NULL;
END $$;
CREATE TRIGGER series_labels_truncated AFTER TRUNCATE ON series
    FOR EACH STATEMENT EXECUTE FUNCTION series_labels_truncated();
