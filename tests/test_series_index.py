"""The writer's series index is a bounded cache of the series table: ids stay right when a
series was dropped from it, memory stays bounded, and label blocks made in SQL (for series
stored before sql/0005) equal the ones the writer makes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from metrics_ingest.formats.exposition import series_block
from metrics_ingest.model import Push, SampleGroup, canonical_labels
from metrics_ingest.store import series_cache
from metrics_ingest.store.sqlite import migrations
from metrics_ingest.store.sqlite.session import SQLiteWriteSession
from tests.conftest import push_of

NOW = 1_795_000_000


def push(groups: list[SampleGroup]) -> Push:
    return push_of(groups, NOW)


def job_groups(first: int, count: int, stamp: int = NOW) -> list[SampleGroup]:
    """Job-level series: a label set per job, two metrics each."""
    return [SampleGroup("hpc", canonical_labels({"job_id": str(job)}), stamp,
                        ["job_cpu", "job_mem"], [float(job), 2.0 * job])
            for job in range(first, first + count)]


@pytest.fixture
def session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SQLiteWriteSession:
    monkeypatch.setattr(series_cache, "GENERATION_SERIES", 1000)
    migrations.migrate(tmp_path / "m.db")
    return SQLiteWriteSession(tmp_path / "m.db", "normal")


def stored_ids(db: sqlite3.Connection) -> dict[tuple[str, str], int]:
    return {(name, labels): series_id for series_id, name, labels
            in db.execute("SELECT id, metric_name, labels FROM series")}


def test_memory_is_bounded_and_ids_stay_right(session: SQLiteWriteSession) -> None:
    for start in range(0, 10_000, 500):  # 20,000 series, 1,000 per batch
        session.commit([push(job_groups(start, 500))])
    index = session.series
    assert len(index) <= 2 * 1000 + 1000  # two generations (and the batch that filled one)
    ids = stored_ids(session.db)
    assert len(ids) == 20_000
    # Series long gone from the cache are written again: found in the table, not duplicated.
    session.commit([push(job_groups(0, 500, NOW + 60))])
    again = stored_ids(session.db)
    assert again == ids
    assert session.db.execute("SELECT count(*) FROM samples").fetchone() == (21_000,)
    assert session.db.execute("SELECT count(*) FROM latest WHERE timestamp = ?",
                              (NOW + 60,)).fetchone() == (1000,)


def test_a_batch_mixing_cached_stored_and_new_series(session: SQLiteWriteSession) -> None:
    session.commit([push(job_groups(0, 600))])  # fills a generation
    session.commit([push(job_groups(600, 600))])  # rotates
    session.commit([push(job_groups(1200, 600))])  # the first 600 are out of the cache
    mixed = job_groups(0, 10) + job_groups(1190, 20) + job_groups(5000, 10)
    session.commit([push(mixed)])
    ids = stored_ids(session.db)
    assert len(ids) == 2 * 1810
    assert len(set(ids.values())) == len(ids)


def test_outside_commit_empties_the_cache(session: SQLiteWriteSession,
                                          tmp_path: Path) -> None:
    session.commit([push(job_groups(0, 10))])
    other = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    other.execute("DELETE FROM series WHERE metric_name = 'job_mem'")
    other.close()
    assert session.outside_change()
    assert len(session.series) == 0
    session.commit([push(job_groups(0, 10, NOW + 1))])
    ids = stored_ids(session.db)
    assert len(ids) == 20
    assert len(set(ids.values())) == 20


@pytest.mark.parametrize("labels", [
    {}, {"host": "n1"}, {"a": 'quo"te', "b": "back\\slash", "c": "new\nline"},
    {"instance": "", "job": "nightly"}, {"ü": "é", "zz": "{}=,"},
])
def test_sql_label_blocks_match_the_writers(tmp_path: Path, labels: dict[str, str]) -> None:
    db_path = tmp_path / "old.db"
    directory = tmp_path / "sql"
    directory.mkdir()
    for migration in migrations.discover():
        if migration.version < 5:
            (directory / migration.path.name).write_text(migration.path.read_text())
    migrations.migrate(db_path, directory)
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("INSERT INTO series (id, metric_name, source, labels) VALUES (1, 'm', ?, ?)",
                 ('a"b\\c', canonical_labels(labels)))
    conn.close()
    migrations.migrate(db_path)  # 0005 makes the blocks in SQL
    conn = sqlite3.connect(db_path)
    [(block,)] = conn.execute("SELECT block FROM series").fetchall()
    conn.close()
    assert block == series_block('a"b\\c', canonical_labels(labels))
