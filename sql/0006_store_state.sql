-- What every server on the file must agree on when `serve --workers N` runs several:
--  * series_epoch: bumped whenever series are deleted, so writers drop the series ids they
--    cache (ids never change while a series exists);
--  * families_version: bumped by every change to `families`, so writers reload the declared
--    types before checking a push against them;
--  * purge_slot: the last scheduled purge claimed (a minute number), so one server runs each.
CREATE TABLE store_state (
    id               INTEGER PRIMARY KEY CHECK (id = 1),
    series_epoch     INTEGER NOT NULL DEFAULT 0,
    families_version INTEGER NOT NULL DEFAULT 0,
    purge_slot       INTEGER NOT NULL DEFAULT 0
);
INSERT INTO store_state (id) VALUES (1);

CREATE TRIGGER series_forgotten AFTER DELETE ON series
BEGIN
    UPDATE store_state SET series_epoch = series_epoch + 1;
END;
CREATE TRIGGER families_inserted AFTER INSERT ON families
BEGIN
    UPDATE store_state SET families_version = families_version + 1;
END;
CREATE TRIGGER families_updated AFTER UPDATE ON families
BEGIN
    UPDATE store_state SET families_version = families_version + 1;
END;
CREATE TRIGGER families_deleted AFTER DELETE ON families
BEGIN
    UPDATE store_state SET families_version = families_version + 1;
END;

-- Change notices between workers (store/changes.py), in commit order: each worker reads
-- those after the last it saw before a scrape. Writers prune old rows.
CREATE TABLE changes (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    origin  TEXT NOT NULL,
    payload TEXT NOT NULL
);
