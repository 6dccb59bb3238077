-- Rows the writer writes to prove the database still takes writes (readiness probe after a
-- failed write): row 1 is rewritten and committed; row 2 is a large blob written and rolled
-- back, which fails if the file cannot grow (a full disk, max_page_count).
CREATE TABLE probe (
    id         INTEGER PRIMARY KEY,
    written_at INTEGER NOT NULL,
    filler     BLOB
);
