"""The label index written behind the writer (sql/0010): the label pairs of series not yet
in `series_labels`, a bounded slice at a time, each slice a short transaction of its own run
between batches (upkeep.py). A push that creates 100k series no longer writes half a million
index rows inside the transaction every other push waits for; readers check the few series
above the watermark directly (query.py)."""

from __future__ import annotations

import sqlite3

from metrics_ingest.store.sqlite.writes import immediate_transaction

SELECT_UPTO = "SELECT labelled_upto FROM store_state"
SELECT_BEHIND = "SELECT 1 FROM series WHERE id > (SELECT labelled_upto FROM store_state) LIMIT 1"
# The slice: the next `limit` series by id (the table's own key: one range).
SELECT_SLICE_END = (
    "SELECT max(id) FROM (SELECT id FROM series WHERE id > ?1 ORDER BY id LIMIT ?2)"
)
# Sorted by the index's key, so the rows go into its B-tree in order.
INSERT_SLICE = (
    "INSERT OR IGNORE INTO series_labels (name, value, series_id)"
    " SELECT 'source', source, id FROM series WHERE id > ?1 AND id <= ?2"
    " UNION ALL"
    " SELECT j.key, j.value, s.id FROM series s, json_each(s.labels) j"
    " WHERE s.id > ?1 AND s.id <= ?2 AND s.labels != ''"
    " ORDER BY 1, 2, 3"
)
SET_UPTO = "UPDATE store_state SET labelled_upto = ?"
SLICE_SERIES = 250  # ~1 ms of job-level series: what a push arriving meanwhile waits


def behind(db: sqlite3.Connection) -> bool:
    """True when some series are not in the label index yet (a read, no transaction)."""
    return db.execute(SELECT_BEHIND).fetchone() is not None


def index_slice(db: sqlite3.Connection, limit: int | None = None) -> bool:
    """Index the next `limit` (SLICE_SERIES) series in a transaction of its own; True if
    more remain."""
    limit = limit or SLICE_SERIES
    if not behind(db):
        return False
    with immediate_transaction(db):
        upto = int(db.execute(SELECT_UPTO).fetchone()[0])
        end = db.execute(SELECT_SLICE_END, (upto, limit)).fetchone()[0]
        if end is None:
            return False
        db.execute(INSERT_SLICE, (upto, end))
        db.execute(SET_UPTO, (end,))
    return behind(db)
