"""Where the query API's work runs: expressions in worker processes (query_pool.py), catalog
reads on QUERY_THREADS threads of the service, each thread with a read connection of its own
opened on first use; all of it stopped at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from aiohttp import web

from metrics_ingest.keys import QUERIES, SETTINGS, STORE
from metrics_ingest.query_pool import QueryActivity, QueryPool
from metrics_ingest.store import QueryReader, Store

QUERY_THREADS = 2  # one per core: a query is Python, and holds the GIL while it computes
T = TypeVar("T")


class QueryService:
    """The query threads and their read connections (one per thread, opened on first use
    there, closed at shutdown)."""

    def __init__(self, store: Store, max_samples: int, location: str,
                 activity: QueryActivity | None = None) -> None:
        self.store = store
        self.max_samples = max_samples
        self.pool = QueryPool(location, max_samples, activity=activity)
        self.executor = ThreadPoolExecutor(QUERY_THREADS, thread_name_prefix="promql")
        self.idle: list[QueryReader] = []
        self.busy: set[QueryReader] = set()
        self.lock = threading.Lock()
        self.stopping = threading.Event()  # set at shutdown: running queries stop at once

    @contextlib.contextmanager
    def reader(self) -> Iterator[QueryReader]:
        with self.lock:
            reader = self.idle.pop() if self.idle else None
        if reader is None:
            reader = self.store.open_query_reader()
        with self.lock:
            self.busy.add(reader)
        try:
            yield reader
        finally:
            with self.lock:
                self.busy.discard(reader)
                self.idle.append(reader)

    async def run(self, work: Callable[[QueryReader], T]) -> T:
        def call() -> T:
            with self.reader() as reader:
                return work(reader)

        return await asyncio.get_running_loop().run_in_executor(self.executor, call)

    def close(self) -> None:
        """Stop running queries (their reads are interrupted, their evaluation ends with
        `canceled`), wait for the threads, close the connections."""
        self.stopping.set()
        self.pool.close()
        with self.lock:
            for reader in self.busy:
                reader.set_deadline(0.0)
        self.executor.shutdown(wait=True, cancel_futures=True)
        for reader in self.idle:
            reader.close()
        self.idle.clear()


PROMQL = web.AppKey("promql", QueryService)


async def query_context(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[PROMQL] = service = QueryService(app[STORE], settings.query_max_samples,
                                         settings.database, app[QUERIES])
    yield
    await asyncio.to_thread(service.close)
