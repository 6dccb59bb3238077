"""The packed sample blocks behind the query API (store/sqlite/blocks.py, sql/0011): what a
query reads from them is what `samples` holds, bit for bit, through late pushes,
deletions, the purge and a builder racing the writer; the server builds them by itself."""

from __future__ import annotations

import math
import random
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from metrics_ingest import upkeep
from metrics_ingest.config import Settings
from metrics_ingest.keys import QUERIES
from metrics_ingest.model import SampleGroup
from metrics_ingest.query_pool import QueryActivity
from metrics_ingest.store import QueryReader, WriteSession, open_store
from metrics_ingest.store.sample_arrays import GRACE_SECONDS
from metrics_ingest.store.sqlite import blocks
from metrics_ingest.store.sqlite.blocks import BLOCK_SECONDS, SQLiteBlockBuilder
from tests.conftest import poll, push_of, rows

HOUR = 3600
T0 = (int(time.time()) - 6 * HOUR) // HOUR * HOUR  # the samples: 3 hours from 6 hours ago
SPAN = 3 * HOUR
ODD_VALUES = [0.1, -0.0, math.inf, -math.inf, 5e-324, 1e-310, 2.0 ** 60 + 1, 1 / 3,
              1.7976931348623157e308]  # (SQLite stores no NaN: staleness is kept apart)


def stored(path: Path) -> tuple[WriteSession, SQLiteBlockBuilder, QueryReader]:
    store = open_store(path)
    store.migrate()
    builder = store.open_block_builder()
    assert isinstance(builder, SQLiteBlockBuilder)
    return store.open_writer("normal"), builder, store.open_query_reader()


def built(path: Path, seed: int, count: int
          ) -> tuple[WriteSession, SQLiteBlockBuilder, QueryReader]:
    """A file holding `count` series (series_groups) with every closed window in blocks."""
    session, builder, reader = stored(path)
    session.commit([push_of(series_groups(random.Random(seed), count))])
    blocks.build_closed(builder, session, int(time.time()))
    return session, builder, reader


def series_groups(rng: random.Random, count: int) -> list[SampleGroup]:
    """`count` series of one name, sampled at their own intervals with gaps, some values
    ones an encoding could lose."""
    groups = []
    for number in range(count):
        interval = rng.choice((1, 10, 15, 30, 60, 97))
        t = T0 + rng.randrange(interval)
        while t < T0 + SPAN:
            if rng.random() < 0.01:
                t += rng.randrange(600, 1800)  # a gap of whole windows
            value = rng.choice(ODD_VALUES) if rng.random() < 0.05 else rng.uniform(-1e6, 1e6)
            groups.append(SampleGroup("hpc", f'{{"n":"{number}"}}', t, ["x"], [value]))
            t += interval
    return groups


def everything(reader: QueryReader, start: int = T0 - HOUR, end: int = T0 + SPAN + HOUR
               ) -> dict[int, list[tuple[int, bytes]]]:
    """Each series' samples by id as the query engine gets them (values as their bits)."""
    ids = [row[0] for row in reader.series(None, 0)]
    keys, values = reader.sample_arrays(ids, start, end)
    found: dict[int, list[tuple[int, bytes]]] = {}
    for key, value in zip(keys.tolist(), values.tobytes().hex(" ", 8).split(), strict=True):
        found.setdefault(key >> 32, []).append(((key & 0xFFFFFFFF) + start, value))
    return found


def from_samples(path: Path, start: int = T0 - HOUR, end: int = T0 + SPAN + HOUR
                 ) -> dict[int, list[tuple[int, bytes]]]:
    """The same, straight from `samples`."""
    found: dict[int, list[tuple[int, bytes]]] = {}
    for series_id, timestamp, value in rows(
            path, "SELECT series_id, timestamp, value FROM samples WHERE timestamp BETWEEN ?"
                  " AND ? ORDER BY series_id, timestamp", (start, end)):
        found.setdefault(series_id, []).append(
            (timestamp, np.float64(value).tobytes().hex()))
    return found


def state(path: Path) -> tuple[int, int, int]:
    upto, epoch, kept = rows(path, "SELECT blocks_upto, blocks_epoch, blocks_kept_from"
                                   " FROM store_state")[0]
    return upto, epoch, kept


async def test_blocks_read_as_the_samples_bit_for_bit(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    session, builder, reader = stored(path)
    session.commit([push_of(series_groups(random.Random(11), 40))])
    before = everything(reader)
    assert before == from_samples(path)
    built = blocks.build_closed(builder, session, T0 + 2 * HOUR + GRACE_SECONDS)
    assert built == 2 * HOUR // BLOCK_SECONDS
    assert state(path)[0] == T0 + 2 * HOUR
    assert rows(path, "SELECT count(*) FROM sample_blocks")[0][0] > 0
    assert everything(reader) == before  # blocks below T0 + 2 h, samples above
    for start, end in ((T0 + 601, T0 + 1799), (T0 + 7199, T0 + 7201), (T0 + 30, T0 + 30)):
        assert everything(reader, start, end) == from_samples(path, start, end)
    # Everything closed: the whole span from blocks.
    blocks.build_closed(builder, session, int(time.time()))
    assert state(path)[0] > T0 + SPAN
    assert everything(reader) == before


async def test_a_late_push_lowers_the_watermark_and_is_read_at_once(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    session, builder, reader = built(path, 12, 10)
    upto, epoch, _ = state(path)
    late = T0 + HOUR + 17  # into a closed window, and one more sample replaced
    session.commit([push_of([SampleGroup("hpc", '{"n":"3"}', late, ["x"], [42.0]),
                             SampleGroup("hpc", '{"n":"late"}', late, ["x"], [7.0])])])
    assert state(path)[:2] == (T0 + HOUR, epoch + 1)
    assert everything(reader) == from_samples(path)
    windows = rows(path, "SELECT count(DISTINCT timestamp - timestamp % 600) FROM samples"
                         " WHERE timestamp >= ?", (T0 + HOUR,))[0][0]
    assert blocks.build_closed(builder, session, int(time.time())) == windows
    assert state(path)[0] == upto
    assert everything(reader) == from_samples(path)


async def test_a_window_read_before_a_late_push_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    session, builder, reader = stored(path)
    session.commit([push_of(series_groups(random.Random(13), 5))])
    over_nothing = builder.plan(int(time.time()))  # (from 0 to the first sample)
    assert over_nothing is not None
    assert (over_nothing.end, over_nothing.window) == (T0, None)
    assert session.write_blocks(over_nothing, None)
    plan = builder.plan(int(time.time()))
    assert plan is not None
    assert (plan.window, plan.end) == (T0, T0 + BLOCK_SECONDS)
    assert session.write_blocks(plan, None)  # begun: its samples frozen
    parts = builder.slices(plan)
    first = next(parts)
    session.commit([push_of([SampleGroup("hpc", '{"n":"1"}', T0 + 5, ["x"], [1.5])])])
    assert not session.write_blocks(plan, first)
    parts.close()
    assert state(path)[0] == T0
    blocks.build_closed(builder, session, int(time.time()))
    assert everything(reader) == from_samples(path)


async def test_deleting_through_the_worker_view_is_read_at_once(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    session, builder, reader = built(path, 14, 10)
    _, epoch, _ = state(path)
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM metrics WHERE timestamp BETWEEN ? AND ? AND labels LIKE ?",
                 (T0 + 1000, T0 + 5000, '%"n":"2"%'))
    conn.commit()
    conn.close()
    upto, later, _ = state(path)
    assert upto == T0 + 600
    assert later > epoch  # (each deleted row bumps it)
    assert everything(reader) == from_samples(path)
    blocks.build_closed(builder, session, int(time.time()))
    assert everything(reader) == from_samples(path)


async def test_the_purge_hides_purged_samples_and_drops_old_blocks(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    session, _, reader = built(path, 15, 10)
    upto, epoch, _ = state(path)
    cutoff = T0 + HOUR + 300  # inside a window: its blocks stay, their older samples go
    while not session.purge_chunk(cutoff)[1]:
        pass
    assert state(path) == (upto, epoch, cutoff)
    assert rows(path, "SELECT min(start) FROM sample_blocks")[0][0] == T0 + HOUR
    assert everything(reader) == from_samples(path)
    assert min(t for points in everything(reader).values() for t, _ in points) >= cutoff


async def test_nothing_to_build_moves_the_watermark_over_the_gap(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    session, builder, reader = stored(path)
    assert blocks.build_closed(builder, session, T0) == 0  # no samples at all
    assert state(path)[0] == T0 - GRACE_SECONDS
    session.commit([push_of([SampleGroup("hpc", "", T0 - 3 * HOUR, ["x"], [1.0]),
                             SampleGroup("hpc", "", T0 + 3, ["x"], [2.0])])])
    assert blocks.build_closed(builder, session, T0 + HOUR) == 2  # two windows, a gap
    assert everything(reader, T0 - 4 * HOUR) == from_samples(path, T0 - 4 * HOUR)


async def test_the_server_builds_the_closed_windows_by_itself(
    make_client: Callable[[Settings], Any], sqlite_settings: Settings
) -> None:
    session, _, _ = stored(sqlite_settings.db_path)
    session.commit([push_of(series_groups(random.Random(16), 20))])
    session.close()
    expected = from_samples(sqlite_settings.db_path)
    client = await make_client(sqlite_settings)
    closed = blocks.window_of(int(time.time()) - GRACE_SECONDS)
    await poll(lambda: state(sqlite_settings.db_path)[0] >= closed, 30)
    response = await client.get("/api/v1/query_range", params={
        "query": 'x{n="4"}', "start": str(T0), "end": str(T0 + SPAN), "step": "1"})
    body = await response.json()
    assert response.status == 200, body
    [result] = body["data"]["result"]
    four = next(series_id for series_id, in rows(
        sqlite_settings.db_path, "SELECT id FROM series WHERE labels = ?", ('{"n":"4"}',)))
    stamps = {t for t, _ in expected[four]}
    assert {int(t) for t, _ in result["values"]} >= stamps


async def test_the_server_builds_no_block_while_queries_run_for_a_while(
        make_client: Callable[[Settings], Any], sqlite_settings: Settings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A PromQL query running keeps the builder waiting (it would take a core from the
    query), but only BLOCKS_QUERY_PATIENCE at a time: then it builds anyway."""
    monkeypatch.setattr(upkeep, "BLOCKS_QUERY_PATIENCE", 3.0)
    session, _, _ = stored(sqlite_settings.db_path)
    session.commit([push_of(series_groups(random.Random(17), 20))])
    session.close()
    client = await make_client(sqlite_settings)
    queries = client.app[QUERIES]
    queries.begin()  # (as a query does, and never ends)
    waiting = time.monotonic()
    closed = blocks.window_of(int(time.time()) - GRACE_SECONDS)
    await poll(lambda: state(sqlite_settings.db_path)[0] >= closed, 30)
    assert time.monotonic() - waiting >= 3.0 - upkeep.BLOCKS_SECONDS
    queries.end()


def test_query_activity_says_how_long_no_query_has_run() -> None:
    activity = QueryActivity()
    assert activity.quiet_for() == math.inf  # none yet
    activity.begin()
    activity.begin()
    activity.end()
    assert activity.quiet_for() == 0.0  # one still runs
    activity.end()
    assert 0.0 <= activity.quiet_for() < 5.0


async def test_deleting_a_whole_stretch_leaves_no_block_of_it(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    session, builder, reader = built(path, 17, 10)
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM metrics WHERE timestamp BETWEEN ? AND ?", (T0 + 1200, T0 + 4199))
    conn.commit()
    conn.close()
    blocks.build_closed(builder, session, int(time.time()))  # passes over the emptied stretch
    assert rows(path, "SELECT count(*) FROM sample_blocks WHERE start >= ? AND start < ?",
                (T0 + 1200, T0 + 4200))[0][0] == 0
    assert everything(reader) == from_samples(path)


async def test_the_open_window_is_written_again_as_it_fills(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    session, builder, reader = stored(path)
    now = T0 + 1000  # (as if it were now: the window [T0 + 600, T0 + 1200) is open)
    session.commit([push_of([SampleGroup("hpc", f'{{"n":"{n}"}}', t, ["x"], [t / 7 + n])
                             for n in range(5) for t in range(T0, now, 15)])])
    blocks.build_closed(builder, session, now)
    assert state(path)[0] == now - GRACE_SECONDS  # the open window, up to 2 minutes ago
    assert everything(reader) == from_samples(path)
    later = now + 150  # pushes go on (none below what the blocks hold: no epoch bump)
    _, epoch, _ = state(path)
    session.commit([push_of([SampleGroup("hpc", f'{{"n":"{n}"}}', t, ["x"], [t / 3])
                             for n in range(5) for t in range(now, later, 15)])])
    assert state(path)[1] == epoch
    assert blocks.build_closed(builder, session, later) == 1  # the same window, fuller
    assert state(path)[0] == later - GRACE_SECONDS
    assert everything(reader) == from_samples(path)
    # Too soon to write it again (OPEN_STEP_SECONDS): nothing to do.
    assert builder.plan(later + 10) is None


async def test_delete_series_sends_its_windows_back_and_forgotten_series_lose_blocks(
        tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    session, builder, reader = built(path, 18, 6)
    two, three = (next(i for i, in rows(path, "SELECT id FROM series WHERE labels = ?",
                                        (f'{{"n":"{n}"}}',))) for n in (2, 3))
    session.delete_window([two], T0 + 1500, T0 + 2500)  # part of one series
    assert state(path)[0] == T0 + 1200
    session.delete_window([three], 0, T0 + 2 * SPAN)  # all of another
    session.settle_deletion([three], 0, T0 + 2 * SPAN)
    assert not rows(path, "SELECT 1 FROM series WHERE id = ?", (three,))
    assert not rows(path, "SELECT 1 FROM sample_blocks WHERE series_id = ?", (three,))
    assert everything(reader) == from_samples(path)
    blocks.build_closed(builder, session, int(time.time()))
    assert everything(reader) == from_samples(path)


async def test_samples_past_the_retention_are_passed_over(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    session, builder, reader = stored(path)
    session.commit([push_of(series_groups(random.Random(19), 4))])
    keep_from = T0 + HOUR  # (as if the retention ended there: the purge is due)
    blocks.build_closed(builder, session, int(time.time()), keep_from)
    assert not rows(path, "SELECT 1 FROM sample_blocks WHERE start < ?", (keep_from,))
    assert everything(reader, keep_from) == from_samples(path, keep_from)


async def test_settling_copies_blocks_written_behind_a_reader_into_the_file(
        tmp_path: Path) -> None:
    """Blocks committed while a reader holds an older snapshot stay in the WAL (SQLite's
    checkpoint at a commit stops at that reader); once it is gone, settle() copies them into
    the file, so later readers read them in place."""
    session, builder, reader = stored(tmp_path / "m.db")
    session.commit([push_of(series_groups(random.Random(7), 200))])
    with sqlite3.connect(tmp_path / "m.db") as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    before = (tmp_path / "m.db").stat().st_size
    old = sqlite3.connect(f"file:{tmp_path / 'm.db'}?mode=ro", uri=True, isolation_level=None)
    old.execute("BEGIN")
    old.execute("SELECT count(*) FROM series").fetchone()  # (its snapshot, held)
    assert blocks.build_closed(builder, session, int(time.time())) > 0
    old.execute("COMMIT")
    old.close()
    assert (tmp_path / "m.db").stat().st_size == before  # every block still in the WAL
    builder.settle()
    assert (tmp_path / "m.db").stat().st_size > before
    assert everything(reader) == from_samples(tmp_path / "m.db")
