"""The writer's batch insert: multi-row VALUES chunks store exactly the rows given, the last of
equal keys winning, whatever the batch size."""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator
from itertools import chain
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metrics_ingest.store.sqlite import migrations, sql, writes

SERIES = [(i, f"metric_{i}", "hpc", "", '{source="hpc"}') for i in range(1, 6)]
# -0.0 is left out: SQLite stores integral reals as integers, so it reads back as 0.0.
EXTREMES = [0.0, 5e-324, -5e-324, sys.float_info.max, -sys.float_info.max,
            sys.float_info.min, 0.1, 1 / 3, 2.0**53 + 1, -123456789.125]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    migrations.migrate(tmp_path / "m.db")
    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    conn.executemany(sql.INSERT_SERIES, SERIES)
    yield conn
    conn.close()


def write(db: sqlite3.Connection, samples: list[tuple[int, int, float]],
          latest: list[tuple[int, int, float]]) -> None:
    with writes.immediate_transaction(db):
        writes.insert_rows(db, list(chain.from_iterable(samples)),
                            list(chain.from_iterable(latest)))


@pytest.mark.parametrize("count", [1, 2, 255, 256, 257, 511, 1000, 1300])
def test_every_chunk_size_stores_every_row(db: sqlite3.Connection, count: int) -> None:
    samples = [(1_790_000_000 + i, 1 + i % 5, i * 0.5) for i in range(count)]
    write(db, samples, [(1, samples[-1][0], 7.0)])
    stored = db.execute("SELECT timestamp, series_id, value FROM samples ORDER BY timestamp")
    assert stored.fetchall() == samples


def test_values_survive_exactly(db: sqlite3.Connection) -> None:
    samples = [(1_790_000_000 + i, 1, value) for i, value in enumerate(EXTREMES)]
    write(db, samples, [])
    stored = [row[0] for row in db.execute("SELECT value FROM samples ORDER BY timestamp")]
    assert [value.hex() for value in stored] == [value.hex() for value in EXTREMES]


def test_latest_keeps_the_newest_sample(db: sqlite3.Connection) -> None:
    write(db, [], [(1, 200, 2.0), (2, 100, 1.0)])
    write(db, [], [(1, 150, 9.0), (2, 300, 3.0)])  # series 1 older: ignored
    latest = db.execute("SELECT series_id, timestamp, value FROM latest ORDER BY series_id")
    assert latest.fetchall() == [(1, 200, 2.0), (2, 300, 3.0)]


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(1, 5),
                          st.floats(allow_nan=False, allow_infinity=False)),
                min_size=1, max_size=700))
def test_equal_keys_last_one_wins(db: sqlite3.Connection,
                                  rows: list[tuple[int, int, float]]) -> None:
    db.execute("DELETE FROM samples")
    write(db, rows, [])
    expected = {(timestamp, series): value for timestamp, series, value in rows}
    stored = {(timestamp, series): value for timestamp, series, value in
              db.execute("SELECT timestamp, series_id, value FROM samples")}
    assert stored == expected
