"""A concurrent pusher for the process-level tests: distinct pushes, and a record of exactly
which were acknowledged, refused, or lost to a dropped connection."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psycopg

from tests.conftest import AUTH

SAMPLES_PER_PUSH = 5
BASE_TIMESTAMP = 1_790_000_000  # a fixed past second; push i carries BASE_TIMESTAMP + i


def push_body(index: int) -> dict[str, object]:
    return {"source": "load", "timestamp": BASE_TIMESTAMP + index,
            "metrics": {f"m{j}": index * 10 + j + 0.25 for j in range(SAMPLES_PER_PUSH)}}


@dataclass
class PushLoad:
    """`workers` clients pushing push 0, 1, 2, ... until stopped or the server goes away.

    With several servers (`url` a list), push i goes to server i mod n; a server that drops
    a connection is taken out of the rotation (that push's outcome stays unknown)."""

    url: str | list[str]
    workers: int = 16
    acked: set[int] = field(default_factory=set)
    refused: dict[int, int] = field(default_factory=dict)  # push -> HTTP status
    dropped: set[int] = field(default_factory=set)  # connection errors: outcome unknown
    _next: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        self.live = [self.url] if isinstance(self.url, str) else list(self.url)
        self.acked_by: dict[str, int] = dict.fromkeys(self.live, 0)
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(self.workers)]

    async def _worker(self) -> None:
        while not self._stop.is_set() and self.live:
            index = self._next
            self._next += 1
            url = self.live[index % len(self.live)]
            try:
                async with self._session.post(url + "/ingest", json=push_body(index),
                                              headers=AUTH) as response:
                    await response.read()
                    if response.status == 200:
                        self.acked.add(index)
                        self.acked_by[url] += 1
                    else:
                        self.refused[index] = response.status
            except (aiohttp.ClientError, TimeoutError):
                self.dropped.add(index)
                if len(self.live) > 1:
                    if url in self.live:
                        self.live.remove(url)
                elif len(self.dropped) > 4 * self.workers:
                    return  # the server is gone: stop hammering a closed port

    async def wait_for_acks(self, count: int, seconds: float = 30.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while len(self.acked) < count:
            assert loop.time() < deadline, f"only {len(self.acked)} acks after {seconds} s"
            assert not all(task.done() for task in self._tasks), "all workers stopped"
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        await self._session.close()

    @property
    def attempted(self) -> int:
        return self._next


STORED = ("SELECT timestamp, metric_name, metric_value FROM metrics WHERE source = 'load'"
          " ORDER BY timestamp, metric_name")


def stored_pushes(where: Path | str) -> dict[int, list[tuple[str, float]]]:
    """What the database (an SQLite file, or a PostgreSQL URL) holds of the load, by push
    index, read on a fresh connection."""
    if isinstance(where, str):
        with psycopg.connect(where) as pg:
            rows = [tuple(row) for row in pg.execute(STORED).fetchall()]
    else:
        conn = sqlite3.connect(where)
        try:
            rows = conn.execute(STORED).fetchall()
        finally:
            conn.close()
    pushes: dict[int, list[tuple[str, float]]] = {}
    for timestamp, name, value in rows:
        pushes.setdefault(timestamp - BASE_TIMESTAMP, []).append((name, value))
    return pushes


def expected(index: int) -> list[tuple[str, float]]:
    return [(f"m{j}", index * 10 + j + 0.25) for j in range(SAMPLES_PER_PUSH)]
