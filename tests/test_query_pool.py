"""PromQL in worker processes (query_pool.py): errors cross the process boundary whole, a
worker that dies mid-query answers `canceled` and the next query gets a fresh pool, and
closing the pool stops a query in flight at once."""

from __future__ import annotations

import asyncio
import gc
import pickle
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from metrics_ingest.config import Settings
from metrics_ingest.http.query_service import PROMQL
from metrics_ingest.promql.values import (
    BadData,
    ExecutionError,
    QueryCanceled,
    QueryError,
    QueryTimeout,
    Unsupported,
)
from metrics_ingest.query_pool import FREEZE_AFTER, QueryPool, Worker
from metrics_ingest.store import open_store
from metrics_ingest.store.sqlite.query import MAPPED_BYTES, SQLiteQueryReader
from tests.conftest import AUTH, poll

Client = TestClient[web.Request, web.Application]
NOW = 1_795_000_000
# Seconds of work in a worker whatever is stored: a 30-day subquery at one second.
HEAVY = "max_over_time(vector(time())[30d:1s])"


@pytest.mark.parametrize("error", [
    BadData("bad"), Unsupported("the foo() function"), QueryTimeout(), QueryCanceled(),
    ExecutionError("many-to-many matching not allowed")])
def test_query_errors_pickle_whole(error: QueryError) -> None:
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error)
    assert again.message == error.message
    assert again.error_type == error.error_type


async def test_a_dead_worker_answers_canceled_and_is_replaced(
        make_client: Callable[[Settings], Any], sqlite_settings: Settings) -> None:
    client: Client = await make_client(sqlite_settings)
    body = {"source": "a", "timestamp": NOW, "metrics": {"m": 1}}
    assert (await client.post("/ingest", json=body, headers=AUTH)).status == 200
    pool = client.app[PROMQL].pool
    heavy = asyncio.ensure_future(client.get("/api/v1/query",
                                             params={"query": HEAVY, "time": str(NOW)}))
    await poll(lambda: bool(pool._executor is not None
                            and getattr(pool._executor, "_processes", None)))
    assert pool._executor is not None
    for process in list(pool._executor._processes.values()):  # type: ignore[attr-defined]
        process.kill()
    response = await heavy
    assert response.status == 503
    assert (await response.json())["errorType"] == "canceled"
    again = await client.get("/api/v1/query", params={"query": "m", "time": str(NOW)})
    assert again.status == 200
    assert (await again.json())["data"]["result"][0]["value"] == [NOW, "1"]


async def test_closing_stops_a_query_in_flight(tmp_path: Path) -> None:
    store = open_store(tmp_path / "m.db")
    store.migrate()
    pool = QueryPool(str(tmp_path / "m.db"), 50_000_000, workers=1)
    heavy = asyncio.ensure_future(pool.instant(HEAVY, NOW * 1000, time.monotonic() + 120))
    await poll(lambda: bool(pool._executor is not None
                            and getattr(pool._executor, "_processes", None)))
    started = time.monotonic()
    await asyncio.to_thread(pool.close)
    with pytest.raises(QueryCanceled):
        await heavy
    assert time.monotonic() - started < 10
    with pytest.raises(QueryCanceled):  # a closed pool takes no more
        await pool.instant("1", NOW * 1000, time.monotonic() + 5)


def test_only_the_query_workers_read_the_file_mapped(tmp_path: Path) -> None:
    """A query worker's reader maps the database (a failed read kills only that worker, which
    is replaced, as above); the server's own readers never do."""
    store = open_store(tmp_path / "m.db")
    store.migrate()
    worker_reader, _ = Worker(str(tmp_path / "m.db"), 1000).ready()
    own_reader = store.open_query_reader()
    try:
        assert isinstance(worker_reader, SQLiteQueryReader)
        assert isinstance(own_reader, SQLiteQueryReader)
        assert worker_reader.db.execute("PRAGMA mmap_size").fetchone()[0] == MAPPED_BYTES
        assert own_reader.db.execute("PRAGMA mmap_size").fetchone()[0] == 0
    finally:
        worker_reader.close()
        own_reader.close()


def test_a_worker_freezes_its_label_cache_once_it_has_grown(tmp_path: Path) -> None:
    """After a query that cached FREEZE_AFTER new label sets, the worker's objects leave the
    collector's sight (gc.freeze); fewer, or an emptied cache, freeze nothing."""
    open_store(tmp_path / "m.db").migrate()
    worker = Worker(str(tmp_path / "m.db"), 1000)
    labels = worker.ready()[1]
    try:
        for number in range(FREEZE_AFTER - 1):
            labels.held[("m", "s", str(number))] = ({}, (), "")
        before = gc.get_freeze_count()
        worker.settle()
        assert gc.get_freeze_count() == before
        labels.held[("m", "s", "last")] = ({}, (), "")
        worker.settle()
        assert gc.get_freeze_count() > before
        assert worker.frozen == FREEZE_AFTER
        labels.held = {}
        worker.settle()
        assert worker.frozen == 0
    finally:
        gc.unfreeze()
        if worker.reader is not None:
            worker.reader.close()
