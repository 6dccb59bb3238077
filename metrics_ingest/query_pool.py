"""PromQL queries (`/api/v1/query`, `/api/v1/query_range`) in worker processes, each with
its own read connection and label-set cache.

Processes, not threads: a heavy query is seconds of Python and numpy, and in a thread of the
server it holds the GIL against every push the event loop answers. W9's pushes during a 6 h
range query: p99 2.8x their idle p99 with the query on a thread, 1.45x in a worker process
(bench/README.md, "PromQL in worker processes"). The workers run at a lower priority, so
pushes win the CPU too; they start on the first query and end with the server.

A query's deadline is a time.monotonic() value, the same clock in every process (Linux's
CLOCK_MONOTONIC). Its answer comes back as the JSON of the API's `data`, made in the worker.
"""

from __future__ import annotations

import asyncio
import gc
import math
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import orjson

from metrics_ingest import promql
from metrics_ingest.parsing import start_worker
from metrics_ingest.promql.values import QueryCanceled
from metrics_ingest.store import QueryReader, open_store

QUERY_WORKERS = 2  # queries at once; each worker holds a read connection
# New cached label sets after which a worker moves what it holds out of the cyclic garbage
# collector's sight. Otherwise every full collection during a query walks the whole cache
# (10,000 series: three objects each): W9's instant query 83 -> 72 ms, its range query
# 351 -> 335 ms, in-process medians of 9 (bench/README.md, "Mapped reads, the WAL left
# behind, the query workers' collector").
FREEZE_AFTER = 1000


@dataclass
class Worker:
    """What a worker process keeps between queries."""

    location: str
    max_samples: int
    reader: QueryReader | None = None
    labels: promql.LabelsCache | None = None
    frozen: int = 0  # label sets cached at the last gc.freeze()

    def settle(self) -> None:
        """After a query: once the cache has grown by FREEZE_AFTER, collect what the queries
        since left (only those: older objects are frozen) and freeze the rest."""
        held = 0 if self.labels is None else len(self.labels.held)
        if held < self.frozen:  # (the cache was emptied)
            self.frozen = held
        if held - self.frozen >= FREEZE_AFTER:
            gc.collect()
            gc.freeze()
            self.frozen = held

    def ready(self) -> tuple[QueryReader, promql.LabelsCache]:
        if self.reader is None:
            self.reader = open_store(self.location).open_query_reader(mapped=True)
        if self.labels is None:
            self.labels = promql.LabelsCache()
        return self.reader, self.labels


class QueryActivity:
    """Whether PromQL queries are running, and since when none has: the blocks builder
    gives way to them (upkeep.blocks_context). Touched on the event loop only."""

    def __init__(self) -> None:
        self.running = 0
        self.ended = -math.inf

    def begin(self) -> None:
        self.running += 1

    def end(self) -> None:
        self.running -= 1
        self.ended = time.monotonic()

    def quiet_for(self) -> float:
        """Seconds since the last query ended; 0 while one runs."""
        return 0.0 if self.running else time.monotonic() - self.ended


# The one module-level object: it exists in worker processes only, made by their
# initializer (a worker runs one query at a time).
WORKER: Worker | None = None


def start(location: str, max_samples: int, server_pid: int) -> None:
    """A worker's initializer."""
    global WORKER
    start_worker(server_pid)
    gc.set_threshold(50_000, 50, 100)  # as the server's (serve.tune_garbage_collector)
    WORKER = Worker(location, max_samples)


def instant(text: str, at: int, deadline: float) -> bytes:
    """In a worker: promql.instant_query, its `data` as JSON."""
    assert WORKER is not None
    reader, labels = WORKER.ready()
    answer = orjson.dumps(promql.instant_query(reader, text, at,
                                               max_samples=WORKER.max_samples,
                                               deadline=deadline, labels_cache=labels))
    WORKER.settle()
    return answer


def range_of(text: str, start: int, end: int, step: int, deadline: float) -> bytes:
    """In a worker: promql.range_query, its `data` as JSON."""
    assert WORKER is not None
    reader, labels = WORKER.ready()
    answer = orjson.dumps(promql.range_query(reader, text, start, end, step,
                                             max_samples=WORKER.max_samples,
                                             deadline=deadline, labels_cache=labels))
    WORKER.settle()
    return answer


class QueryPool:
    """The worker processes (forkserver: they do not inherit the server's threads), made
    on first use; a pool a worker died in is replaced for the next query."""

    def __init__(self, location: str, max_samples: int, workers: int = QUERY_WORKERS,
                 activity: QueryActivity | None = None) -> None:
        self.activity = activity or QueryActivity()
        self.location = location
        self.max_samples = max_samples
        self.workers = workers
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self.closed = False

    def _pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self.closed:
                raise QueryCanceled()
            if self._executor is None:
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload(["metrics_ingest.query_pool"])
                self._executor = ProcessPoolExecutor(
                    self.workers, mp_context=context, initializer=start,
                    initargs=(self.location, self.max_samples, os.getpid()))
            return self._executor

    def _discard(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is broken:
                self._executor = None
        broken.shutdown(wait=False, cancel_futures=True)

    async def instant(self, text: str, at: int, deadline: float) -> bytes:
        return await self._run(instant, text, at, deadline)

    async def range(self, text: str, start: int, end: int, step: int, deadline: float
                    ) -> bytes:
        return await self._run(range_of, text, start, end, step, deadline)

    async def _run(self, function: Callable[..., bytes], *args: object) -> bytes:
        # Submitted from a thread: submit() may start a worker process, which must not
        # happen on the event loop.
        self.activity.begin()
        try:
            pool = await asyncio.to_thread(self._pool)
            try:
                submitted: Future[bytes] = await asyncio.to_thread(pool.submit, function, *args)
                return await asyncio.wrap_future(submitted)
            except BrokenProcessPool:
                # A worker died (killed, out of memory) or the server is stopping.
                self._discard(pool)
                raise QueryCanceled() from None
        finally:
            self.activity.end()

    def close(self) -> None:
        """Stop the workers, running queries and all (their answers are `canceled`)."""
        with self._lock:
            self.closed = True
            executor, self._executor = self._executor, None
        if executor is None:
            return
        # (The executor's own processes: shutdown() alone waits for a running query.)
        processes = list(getattr(executor, "_processes", {}).values())
        executor.shutdown(wait=False, cancel_futures=True)
        for process in processes:  # a query in flight would run to its deadline
            process.terminate()
        for process in processes:
            process.join(10)
