"""The SQLite query reader: a read-only sqlite3 connection that PromQL evaluates from, on
the query threads, never on the event loop."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from metrics_ingest.model import FamilyMeta
from metrics_ingest.store import QuerySeries, SeriesSamples, StorageError, samples_by_series
from metrics_ingest.store.batch import SELECT_FAMILIES
from metrics_ingest.store.sample_arrays import SampleArrays, arrays_of_pairs, joined
from metrics_ingest.store.sqlite import blocks

# A series with no sample since `since` has no row in latest at or after it: the metric name
# is the first column of series' unique key, so a named selector is one index range.
SELECT_SERIES_NAMED = (
    "SELECT s.id, s.metric_name, s.source, s.labels FROM series s"
    " JOIN latest l ON l.series_id = s.id"
    " WHERE s.metric_name = ? AND l.timestamp >= ? ORDER BY s.id"
)
SELECT_SERIES_ALL = (
    "SELECT s.id, s.metric_name, s.source, s.labels FROM series s"
    " JOIN latest l ON l.series_id = s.id WHERE l.timestamp >= ? ORDER BY s.id"
)
SELECT_SERIES_NAMES = (
    "SELECT s.id, s.metric_name, s.source, s.labels FROM series s"
    " JOIN latest l ON l.series_id = s.id"
    " WHERE s.metric_name IN (SELECT value FROM json_each(?)) AND l.timestamp >= ? ORDER BY s.id"
)
# The label index's (name, value) range, its series checked for name and age; and the series
# above the index's watermark (written behind the writer, sql/0010), checked by their labels
# (a range of series' own key, as long as the index is behind: seconds at most). One
# statement, one snapshot: the two halves never overlap nor leave a gap.
SELECT_SERIES_LABELLED = (
    "SELECT s.id, s.metric_name, s.source, s.labels FROM series_labels p"
    " JOIN series s ON s.id = p.series_id JOIN latest l ON l.series_id = s.id"
    " WHERE p.name = ?1 AND p.value IN (SELECT value FROM json_each(?2)) AND l.timestamp >= ?3"
    " AND (?4 IS NULL OR s.metric_name IN (SELECT value FROM json_each(?4)))"
    " UNION ALL"
    " SELECT s.id, s.metric_name, s.source, s.labels FROM series s"
    " JOIN latest l ON l.series_id = s.id"
    " WHERE s.id > (SELECT labelled_upto FROM store_state) AND l.timestamp >= ?3"
    " AND (?4 IS NULL OR s.metric_name IN (SELECT value FROM json_each(?4)))"
    " AND (CASE WHEN ?1 = 'source' THEN s.source ELSE (SELECT j.value"
    " FROM json_each(nullif(s.labels, '')) j WHERE j.key = ?1) END)"
    " IN (SELECT value FROM json_each(?2))"
    " ORDER BY 1"
)
COUNT_NAMED = "SELECT count(*) FROM series WHERE metric_name IN (SELECT value FROM json_each(?))"
# An estimate for picking the narrowest matcher: the unindexed series all count.
COUNT_LABELLED = (
    "SELECT (SELECT count(*) FROM series_labels"
    " WHERE name = ?1 AND value IN (SELECT value FROM json_each(?2)))"
    " + (SELECT count(*) FROM series s WHERE s.id > (SELECT labelled_upto FROM store_state))"
)
# Each distinct value, a seek along the index from one to the next (a DISTINCT scans every
# entry: 1M for `source` at a million series), kept when one series with it is recent enough:
# usually the first one looked at. Then the unindexed series' own.
SELECT_LABEL_VALUES = (
    "WITH RECURSIVE v (value) AS ("
    " SELECT min(value) FROM series_labels WHERE name = ?1"
    " UNION ALL SELECT (SELECT min(value) FROM series_labels WHERE name = ?1"
    " AND value > v.value) FROM v WHERE v.value IS NOT NULL)"
    " SELECT v.value FROM v WHERE v.value IS NOT NULL"
    " AND EXISTS (SELECT 1 FROM series_labels p JOIN latest l ON l.series_id = p.series_id"
    " WHERE p.name = ?1 AND p.value = v.value AND l.timestamp >= ?2)"
    " UNION"
    " SELECT * FROM (SELECT CASE WHEN ?1 = 'source' THEN s.source ELSE (SELECT j.value"
    " FROM json_each(nullif(s.labels, '')) j WHERE j.key = ?1) END AS value"
    " FROM series s JOIN latest l ON l.series_id = s.id"
    " WHERE s.id > (SELECT labelled_upto FROM store_state) AND l.timestamp >= ?2)"
    " WHERE value IS NOT NULL"
    " ORDER BY 1"
)
SELECT_METRIC_NAMES = (
    "WITH RECURSIVE n (name) AS ("
    " SELECT min(metric_name) FROM series"
    " UNION ALL SELECT (SELECT min(metric_name) FROM series WHERE metric_name > n.name)"
    " FROM n WHERE n.name IS NOT NULL)"
    " SELECT n.name FROM n WHERE n.name IS NOT NULL"
    " AND EXISTS (SELECT 1 FROM series s JOIN latest l ON l.series_id = s.id"
    " WHERE s.metric_name = n.name AND l.timestamp >= ?)"
)
SELECT_LABEL_NAMES = (
    "WITH RECURSIVE n (name) AS ("
    " SELECT min(name) FROM series_labels"
    " UNION ALL SELECT (SELECT min(name) FROM series_labels WHERE name > n.name)"
    " FROM n WHERE n.name IS NOT NULL)"
    " SELECT n.name FROM n WHERE n.name IS NOT NULL"
    " AND EXISTS (SELECT 1 FROM series_labels p JOIN latest l ON l.series_id = p.series_id"
    " WHERE p.name = n.name AND l.timestamp >= ?1)"
    " UNION"
    " SELECT j.key FROM series s JOIN latest l ON l.series_id = s.id,"
    " json_each(nullif(s.labels, '')) j"
    " WHERE s.id > (SELECT labelled_upto FROM store_state) AND l.timestamp >= ?1"
    " UNION"
    " SELECT 'source' FROM series s JOIN latest l ON l.series_id = s.id"
    " WHERE s.id > (SELECT labelled_upto FROM store_state) AND l.timestamp >= ?1"
    " ORDER BY 1"
)
SELECT_NAME_SOURCES = (
    "SELECT DISTINCT s.metric_name, s.source FROM series s JOIN latest l ON l.series_id = s.id"
    " WHERE l.timestamp >= ?"
)
# samples is keyed (timestamp, series_id): the window is one range of the key, and the
# series are picked out of it in SQLite, so Python sees only the rows it asked for.
SELECT_SAMPLES = (
    "SELECT series_id, timestamp, value FROM samples"
    " WHERE timestamp BETWEEN ? AND ? AND series_id IN (SELECT value FROM json_each(?))"
    " ORDER BY timestamp"
)
SELECT_STALE_MARKERS = (
    "SELECT series_id, timestamp FROM stale_markers"
    " WHERE series_id IN (SELECT value FROM json_each(?)) AND timestamp BETWEEN ? AND ?"
    " ORDER BY series_id, timestamp"
)
# From ?2 on (below it, the blocks hold them), keyed from ?1.
SELECT_SAMPLE_PAIRS = (
    "SELECT (series_id << 32) + (timestamp - ?1), value FROM samples"
    " WHERE timestamp BETWEEN ?2 AND ?3 AND series_id IN (SELECT value FROM json_each(?4))"
    " ORDER BY timestamp"
)
SELECT_EVERY_PAIR = (
    "SELECT (series_id << 32) + (timestamp - ?1), value FROM samples"
    " WHERE timestamp BETWEEN ?2 AND ?3 ORDER BY timestamp"
)
SELECT_TOP_ID = "SELECT max(id) FROM series"
PROGRESS_STEPS = 20_000  # SQLite VM steps between looks at the deadline (~1 ms)
# Mapped: pages read in place, not copied in by a read() each (up to SQLite's own cap; the
# rest of a bigger file is read as usual). W9's instant query over 10,000 series: its
# 10,000 block seeks 40 -> 26 ms, the query 98 -> 82 ms (bench/README.md, "Mapped reads").
MAPPED_BYTES = 0x7FFF0000


class SQLiteQueryReader:
    """The store's QueryReader (see store.QueryReader)."""

    def __init__(self, db_path: Path, mapped: bool = False) -> None:
        self.deadline: float | None = None
        try:
            self.db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True,
                                      isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA busy_timeout=5000")
            self.db.execute("PRAGMA cache_size=-16384")  # KiB
            self.db.execute("PRAGMA query_only=ON")
            if mapped:
                self.db.execute(f"PRAGMA mmap_size={MAPPED_BYTES}")
        except sqlite3.Error as exc:
            raise StorageError(str(exc)) from exc
        self.db.set_progress_handler(self._past_deadline, PROGRESS_STEPS)

    def _past_deadline(self) -> int:
        """Non-zero makes SQLite stop the statement ("interrupted")."""
        return int(self.deadline is not None and time.monotonic() > self.deadline)

    def set_deadline(self, deadline: float | None) -> None:
        self.deadline = deadline

    def series(self, name: str | None, since: int) -> list[QuerySeries]:
        try:
            if name is None:
                rows = self.db.execute(SELECT_SERIES_ALL, (since,)).fetchall()
            else:
                rows = self.db.execute(SELECT_SERIES_NAMED, (name, since)).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(str(exc)) from exc
        return [QuerySeries(*row) for row in rows]

    def name_sources(self, since: int) -> list[tuple[str, str]]:
        try:
            rows = self.db.execute(SELECT_NAME_SOURCES, (since,)).fetchall()
            return [(name, source) for name, source in rows]
        except sqlite3.Error as exc:
            raise StorageError(str(exc)) from exc

    def series_named(self, names: Sequence[str], since: int) -> list[QuerySeries]:
        return [QuerySeries(*row) for row in self._rows(
            SELECT_SERIES_NAMES, (orjson.dumps(list(names)), since))]

    def series_labelled(self, label: str, values: Sequence[str], names: Sequence[str] | None,
                        since: int) -> list[QuerySeries]:
        wanted = None if names is None else orjson.dumps(list(names))
        return [QuerySeries(*row) for row in self._rows(
            SELECT_SERIES_LABELLED, (label, orjson.dumps(list(values)), since, wanted))]

    def count_named(self, names: Sequence[str]) -> int:
        return int(self._rows(COUNT_NAMED, (orjson.dumps(list(names)),))[0][0])

    def count_labelled(self, label: str, values: Sequence[str]) -> int:
        return int(self._rows(COUNT_LABELLED, (label, orjson.dumps(list(values))))[0][0])

    def label_values(self, label: str, since: int) -> list[str]:
        if label == "__name__":
            return [row[0] for row in self._rows(SELECT_METRIC_NAMES, (since,))]
        return [row[0] for row in self._rows(SELECT_LABEL_VALUES, (label, since))]

    def label_names(self, since: int) -> list[str]:
        return [row[0] for row in self._rows(SELECT_LABEL_NAMES, (since,))]

    def _rows(self, sql: str, params: tuple[object, ...]) -> list[tuple[Any, ...]]:
        try:
            return self.db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(str(exc)) from exc

    def samples(self, ids: Sequence[int], start: int, end: int) -> dict[int, SeriesSamples]:
        found: dict[int, SeriesSamples] = {}
        if not ids:
            return found
        try:
            samples_by_series(
                self.db.execute(SELECT_SAMPLES, (start, end, orjson.dumps(list(ids)))), found)
        except sqlite3.Error as exc:
            raise StorageError(str(exc)) from exc
        return found

    def sample_arrays(self, ids: Sequence[int], start: int, end: int) -> SampleArrays:
        """Closed windows from the blocks, the rest from samples: both from one snapshot."""
        if not ids:
            return joined([])
        db = self.db
        parts: list[SampleArrays] = []
        try:
            db.execute("BEGIN")
            upto, _, kept_from, _ = db.execute(blocks.SELECT_STATE).fetchone()
            if start < upto:
                found = blocks.read_blocks(db, list(ids), start, end, upto, kept_from)
                if found is not None:
                    parts.append(found)
            if end >= upto:
                parts.append(unblocked(db, ids, start, max(start, upto), end))
        except sqlite3.Error as exc:
            raise StorageError(str(exc)) from exc
        finally:
            if db.in_transaction:
                db.execute("ROLLBACK")
        return joined(parts)

    def stale_markers(self, ids: Sequence[int], start: int, end: int) -> dict[int, list[int]]:
        found: dict[int, list[int]] = {}
        if not ids:
            return found
        try:
            for series_id, timestamp in self.db.execute(
                    SELECT_STALE_MARKERS, (orjson.dumps(list(ids)), start, end)):
                found.setdefault(series_id, []).append(timestamp)
        except sqlite3.Error as exc:
            raise StorageError(str(exc)) from exc
        return found

    def families(self) -> dict[str, FamilyMeta]:
        try:
            return {name: FamilyMeta(kind, text)
                    for name, kind, text in self.db.execute(SELECT_FAMILIES)}
        except sqlite3.Error as exc:
            raise StorageError(str(exc)) from exc

    def close(self) -> None:
        self.db.close()


def unblocked(db: sqlite3.Connection, ids: Sequence[int], start: int, first: int, end: int
              ) -> SampleArrays:
    """The samples of these series in [first, end], keyed from `start`. Asked for most
    series (a dashboard's `rate(x[5m])` over every x), every row of the range is fetched and
    the others dropped in numpy: SQLite's IN test cost more than the rows it saved (13 of
    55 ms for 10k series, bench W9)."""
    if len(ids) * 5 >= (db.execute(SELECT_TOP_ID).fetchone()[0] or 0) * 4:
        keys, values = arrays_of_pairs(
            db.execute(SELECT_EVERY_PAIR, (start, first, end)).fetchall())
        keep = np.isin(keys >> 32, np.asarray(ids, dtype=np.int64))
        return (keys, values) if keep.all() else (keys[keep], values[keep])
    return arrays_of_pairs(db.execute(
        SELECT_SAMPLE_PAIRS, (start, first, end, orjson.dumps(list(ids)))).fetchall())
