-- Rows the writer writes to prove the database still takes writes (readiness probe after a
-- failed write): row 2 is a 256 KiB blob committed and deleted again, which fails if the file
-- cannot grow (a full disk, max_page_count) or is read-only; row 1 records the last probe.
CREATE TABLE probe (
    id         INTEGER PRIMARY KEY,
    written_at INTEGER NOT NULL,
    filler     BLOB
);
