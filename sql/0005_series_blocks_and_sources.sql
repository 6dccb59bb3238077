-- Each series' label block as /metrics writes it (`{source="hpc",host="n1"}`, escaped as the
-- text format escapes label values), made once when the series is created: rendering a
-- million series then costs a string join per series, not a JSON decode.
ALTER TABLE series ADD COLUMN block TEXT NOT NULL DEFAULT '';
UPDATE series SET block =
    '{source="' || replace(replace(replace(source, '\', '\\'), char(10), '\n'), '"', '\"') || '"'
    || coalesce((SELECT group_concat(',' || j.key || '="'
                                     || replace(replace(replace(j.value, '\', '\\'), char(10),
                                                        '\n'), '"', '\"') || '"', '')
                 FROM json_each(CASE WHEN labels = '' THEN '{}' ELSE labels END) j), '')
    || '}';

-- The newest sample time of every source, kept by the writer: /api/sources and SHOW
-- DATABASES read this instead of scanning every series' latest sample.
CREATE TABLE sources (
    source TEXT PRIMARY KEY,
    newest INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO sources (source, newest)
SELECT s.source, max(l.timestamp) FROM series s JOIN latest l ON l.series_id = s.id
GROUP BY s.source;
