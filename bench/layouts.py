"""Measure candidate SQLite layouts for samples: insert rate, bytes per sample, read queries.

Run: python bench/layouts.py [--series 16000] [--samples 1000000]
Each layout gets a fresh file; the insert loop mimics the writer (10k-sample transactions,
executemany, WAL, synchronous=NORMAL) so the figures compare like with like.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA cache_size=-65536",
)

SERIES_DDL = (
    "CREATE TABLE series (id INTEGER PRIMARY KEY, source TEXT NOT NULL,"
    " metric_name TEXT NOT NULL, labels TEXT NOT NULL,"
    " UNIQUE (source, metric_name, labels))"
)

LAYOUTS: dict[str, tuple[str, ...]] = {
    "worker": (
        "CREATE TABLE metrics (id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL,"
        " timestamp INTEGER NOT NULL, metric_name TEXT NOT NULL, metric_value REAL NOT NULL,"
        " created_at DATETIME DEFAULT CURRENT_TIMESTAMP)",
    ),
    "worker_indexed": (
        "CREATE TABLE metrics (id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL,"
        " timestamp INTEGER NOT NULL, metric_name TEXT NOT NULL, metric_value REAL NOT NULL,"
        " created_at DATETIME DEFAULT CURRENT_TIMESTAMP)",
        "CREATE INDEX metrics_ts ON metrics(timestamp)",
        "CREATE INDEX metrics_src ON metrics(source, metric_name, timestamp)",
    ),
    "series_ts": (
        SERIES_DDL,
        "CREATE TABLE samples (series_id INTEGER NOT NULL, timestamp INTEGER NOT NULL,"
        " value REAL NOT NULL, PRIMARY KEY (series_id, timestamp)) WITHOUT ROWID",
    ),
    "ts_series": (
        SERIES_DDL,
        "CREATE TABLE samples (timestamp INTEGER NOT NULL, series_id INTEGER NOT NULL,"
        " value REAL NOT NULL, PRIMARY KEY (timestamp, series_id)) WITHOUT ROWID",
    ),
    "ts_series_latest": (
        SERIES_DDL,
        "CREATE TABLE samples (timestamp INTEGER NOT NULL, series_id INTEGER NOT NULL,"
        " value REAL NOT NULL, PRIMARY KEY (timestamp, series_id)) WITHOUT ROWID",
        "CREATE TABLE latest (series_id INTEGER PRIMARY KEY, timestamp INTEGER NOT NULL,"
        " value REAL NOT NULL)",
    ),
}

INSERTS = {
    "worker": "INSERT INTO metrics (source, timestamp, metric_name, metric_value) VALUES (?,?,?,?)",
    "series_ts": "INSERT OR REPLACE INTO samples (series_id, timestamp, value) VALUES (?,?,?)",
    "ts_series": "INSERT OR REPLACE INTO samples (timestamp, series_id, value) VALUES (?,?,?)",
}
UPSERT_LATEST = (
    "INSERT INTO latest (series_id, timestamp, value) VALUES (?,?,?)"
    " ON CONFLICT (series_id) DO UPDATE SET timestamp = excluded.timestamp,"
    " value = excluded.value WHERE excluded.timestamp >= latest.timestamp"
)

NEWEST_QUERIES = {
    "series_ts": (
        "SELECT s.source, s.metric_name, s.labels, x.timestamp, x.value FROM series s"
        " JOIN samples x ON x.series_id = s.id"
        " AND x.timestamp = (SELECT MAX(timestamp) FROM samples WHERE series_id = s.id)"
        " WHERE x.timestamp >= ?"
    ),
    "ts_series": (
        "SELECT s.source, s.metric_name, s.labels, x.t, x.value FROM"
        " (SELECT series_id, MAX(timestamp) AS t, value FROM samples WHERE timestamp >= ?"
        " GROUP BY series_id) x JOIN series s ON s.id = x.series_id"
    ),
    "ts_series_latest": (
        "SELECT s.source, s.metric_name, s.labels, l.timestamp, l.value FROM latest l"
        " JOIN series s ON s.id = l.series_id WHERE l.timestamp >= ?"
    ),
}
WINDOW_QUERIES = {
    "series_ts": (
        "SELECT s.source, x.timestamp, s.metric_name, x.value, s.labels FROM samples x"
        " JOIN series s ON s.id = x.series_id WHERE x.timestamp >= ?"
        " ORDER BY x.timestamp DESC LIMIT 10000"
    ),
    "ts_series": (
        "SELECT s.source, x.timestamp, s.metric_name, x.value, s.labels FROM samples x"
        " JOIN series s ON s.id = x.series_id WHERE x.timestamp >= ?"
        " ORDER BY x.timestamp DESC LIMIT 10000"
    ),
}
WINDOW_QUERIES["ts_series_latest"] = WINDOW_QUERIES["ts_series"]


def sample_stream(n_series: int, n_samples: int, t0: int) -> Iterator[tuple[int, int, float]]:
    """(series_id, timestamp, value): every series reports once per step, HPC-style."""
    rng = random.Random(1)
    step = 0
    emitted = 0
    while emitted < n_samples:
        ts = t0 + step * 60
        for sid in range(1, n_series + 1):
            yield sid, ts, float(rng.randint(0, 500)) if sid % 3 else rng.random() * 100
            emitted += 1
            if emitted >= n_samples:
                return
        step += 1


def timed(fn: Callable[[], object], repeat: int = 5) -> float:
    """Median seconds of `repeat` calls."""
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def measure(
    layout: str, n_series: int, n_samples: int, batch: int, folder: Path
) -> dict[str, object]:
    path = folder / f"{layout}.db"
    db = sqlite3.connect(path, isolation_level=None)
    for pragma in PRAGMAS:
        db.execute(pragma)
    for ddl in LAYOUTS[layout]:
        db.execute(ddl)
    base = layout.removesuffix("_latest").removesuffix("_indexed")
    if base != "worker":
        db.executemany(
            "INSERT INTO series (id, source, metric_name, labels) VALUES (?,?,?,?)",
            [(i, f"node{i % 100}", f"metric_{i // 100}", '{"partition":"batch"}')
             for i in range(1, n_series + 1)],
        )
    t0 = int(time.time()) - (n_samples // n_series + 1) * 60
    rows = list(sample_stream(n_series, n_samples, t0))
    insert = INSERTS[base]
    elapsed = 0.0
    for start in range(0, len(rows), batch):
        chunk = rows[start:start + batch]
        begin = time.perf_counter()
        db.execute("BEGIN IMMEDIATE")
        if base == "worker":
            db.executemany(insert, [(f"node{s % 100}", t, f"metric_{s // 100}", v)
                                    for s, t, v in chunk])
        elif base == "series_ts":
            db.executemany(insert, chunk)
        else:
            db.executemany(insert, [(t, s, v) for s, t, v in chunk])
        if layout.endswith("_latest"):
            newest: dict[int, tuple[int, int, float]] = {}
            for row in chunk:
                newest[row[0]] = row
            db.executemany(UPSERT_LATEST, newest.values())
        db.execute("COMMIT")
        elapsed += time.perf_counter() - begin
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = os.path.getsize(path)
    result: dict[str, object] = {
        "layout": layout,
        "rows": len(rows),
        "rows_per_s": round(len(rows) / elapsed),
        "bytes_per_row": round(size / len(rows), 1),
    }
    newest_ts = rows[-1][1]
    if layout in NEWEST_QUERIES:
        q = NEWEST_QUERIES[layout]
        result["newest_per_series_ms"] = round(
            1000 * timed(lambda: db.execute(q, (newest_ts - 600,)).fetchall()), 1)
        w = WINDOW_QUERIES[layout]
        result["window_top10k_ms"] = round(
            1000 * timed(lambda: db.execute(w, (newest_ts - 3600,)).fetchall()), 1)
    db.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--series", type=int, default=16000)
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10000)
    parser.add_argument("--layouts", default=",".join(LAYOUTS))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for layout in args.layouts.split(","):
            print(json.dumps(measure(layout, args.series, args.samples, args.batch, Path(tmp))),
                  flush=True)


if __name__ == "__main__":
    main()
