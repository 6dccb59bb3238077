"""The SQLite label index written behind the writer (sql/0010, store/sqlite/label_index.py):
selectors, label names and label values are the same whether a series is indexed yet or
not, slices index the series in id order up to the watermark, and a new series never gets
an id at or below it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest

from metrics_ingest.promql.selectors import parse_selector, select
from metrics_ingest.store import QueryReader, open_store
from metrics_ingest.store.sqlite import migrations
from metrics_ingest.store.sqlite.label_index import behind, index_slice
from metrics_ingest.store.sqlite.series import SQLiteSeriesTable
from tests.conftest import rows
from tests.test_label_index import SELECTORS, SERIES, expected, migrated_before

NOW = 1_795_000_000


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """SERIES stored with a recent sample each, none of them in the label index yet."""
    path = tmp_path / "m.db"
    open_store(path).migrate()
    with sqlite3.connect(path) as db:
        for series_id, (name, source, labels) in enumerate(SERIES, start=1):
            db.execute("INSERT INTO series (id, metric_name, source, labels) VALUES (?, ?, ?, ?)",
                       (series_id, name, source, orjson.dumps(labels).decode() if labels else ""))
            db.execute("INSERT INTO latest (series_id, timestamp, value) VALUES (?, ?, 1)",
                       (series_id, NOW))
    db.close()
    return path


def picked(reader: QueryReader, selector: str) -> list[list[tuple[str, str]]]:
    """The label sets a selector picks, each as sorted pairs."""
    return sorted(list(labels) for _, labels in select(reader, parse_selector(selector), NOW - 60))


def by_hand(selector: str) -> list[list[tuple[str, str]]]:
    return sorted(sorted(labels.items()) for labels in expected(selector))


def answers(reader: QueryReader) -> tuple[object, ...]:
    return (tuple(picked(reader, selector) for selector in SELECTORS),
            reader.label_names(NOW - 60),
            {name: reader.label_values(name, NOW - 60)
             for name in ("mode", "cpu", "kind", "source", "__name__", "absent")})


def test_unindexed_series_are_selected_as_indexed_ones(db_path: Path) -> None:
    reader = open_store(db_path).open_query_reader()
    with sqlite3.connect(db_path) as db:
        assert behind(db)
        unindexed = answers(reader)
        assert unindexed[0] == tuple(by_hand(selector) for selector in SELECTORS)
        assert unindexed[1] == ["cpu", "kind", "mode", "source"]
        assert unindexed[2]["mode"] == ["idle", "system", "user"]
        assert unindexed[2]["source"] == ["alpha", "beta", "gamma"]
        assert unindexed[2]["absent"] == []
        slices = 0
        while True:  # three series a slice: part indexed, part not, answers alike
            more = index_slice(db, limit=3)
            slices += 1
            assert answers(reader) == unindexed
            if not more:
                break
        assert slices == 3
        assert not behind(db)
        assert rows(db_path, "SELECT labelled_upto FROM store_state") == [(len(SERIES),)]
        assert rows(db_path, "SELECT count(*) FROM series_labels") == [
            (sum(1 + len(labels) for _, _, labels in SERIES),)]
        assert not index_slice(db)  # nothing left: no transaction at all
    db.close()
    reader.close()


def test_new_series_ids_stay_above_the_watermark(db_path: Path) -> None:
    with sqlite3.connect(db_path, isolation_level=None) as db:
        while index_slice(db):
            pass
        db.execute("DELETE FROM series WHERE id = ?", (len(SERIES),))  # the newest one
        created = SQLiteSeriesTable(db).create([("fresh", "delta", '{"zone":"z1"}', "")])
        assert list(created.values()) == [len(SERIES) + 1]
        db.execute("INSERT INTO latest (series_id, timestamp, value) VALUES (?, ?, 1)",
                   (len(SERIES) + 1, NOW))
        assert index_slice(db) is False  # that one indexed, none left
    db.close()
    reader = open_store(db_path).open_query_reader()
    assert picked(reader, '{zone="z1"}') == [
        [("__name__", "fresh"), ("source", "delta"), ("zone", "z1")]]
    reader.close()


def test_the_migration_puts_the_watermark_past_series_indexed_by_the_trigger(
        tmp_path: Path) -> None:
    db = migrated_before(tmp_path, 10)
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO series (id, metric_name, source, labels) VALUES"
                     " (1, 'cpu', 'alpha', '{\"cpu\":\"0\"}'), (7, 'up', 'beta', '')")
    conn.close()
    assert migrations.migrate(db) == ["0010_label_index_behind", "0011_sample_blocks"]
    assert rows(db, "SELECT labelled_upto FROM store_state") == [(7,)]
    assert sorted(rows(db, "SELECT name, value, series_id FROM series_labels")) == [
        ("cpu", "0", 1), ("source", "alpha", 1), ("source", "beta", 7)]
    with sqlite3.connect(db) as conn:
        assert not behind(conn)
        conn.execute("INSERT INTO series (id, metric_name, source, labels) VALUES"
                     " (8, 'new', 'beta', '')")  # no trigger any more: behind now
        assert behind(conn)
    conn.close()
