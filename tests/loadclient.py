"""A concurrent pusher for the process-level tests: distinct pushes, and a record of exactly
which were acknowledged, refused, or lost to a dropped connection."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from tests.conftest import AUTH

SAMPLES_PER_PUSH = 5
BASE_TIMESTAMP = 1_790_000_000  # a fixed past second; push i carries BASE_TIMESTAMP + i


def push_body(index: int) -> dict[str, object]:
    return {"source": "load", "timestamp": BASE_TIMESTAMP + index,
            "metrics": {f"m{j}": index * 10 + j + 0.25 for j in range(SAMPLES_PER_PUSH)}}


@dataclass
class PushLoad:
    """`workers` clients pushing push 0, 1, 2, ... until stopped or the server goes away."""

    url: str
    workers: int = 16
    acked: set[int] = field(default_factory=set)
    refused: dict[int, int] = field(default_factory=dict)  # push -> HTTP status
    dropped: set[int] = field(default_factory=set)  # connection errors: outcome unknown
    _next: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(self.workers)]

    async def _worker(self) -> None:
        while not self._stop.is_set():
            index = self._next
            self._next += 1
            try:
                async with self._session.post(self.url + "/ingest", json=push_body(index),
                                              headers=AUTH) as response:
                    await response.read()
                    if response.status == 200:
                        self.acked.add(index)
                    else:
                        self.refused[index] = response.status
            except (aiohttp.ClientError, TimeoutError):
                self.dropped.add(index)
                if len(self.dropped) > 4 * self.workers:
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


def stored_pushes(db_path: Path) -> dict[int, list[tuple[str, float]]]:
    """What the database holds of the load, by push index, read on a fresh connection."""
    conn = sqlite3.connect(db_path)
    try:
        rows = conn.execute(
            "SELECT timestamp, metric_name, metric_value FROM metrics WHERE source = 'load'"
            " ORDER BY timestamp, metric_name").fetchall()
    finally:
        conn.close()
    pushes: dict[int, list[tuple[str, float]]] = {}
    for timestamp, name, value in rows:
        pushes.setdefault(timestamp - BASE_TIMESTAMP, []).append((name, value))
    return pushes


def expected(index: int) -> list[tuple[str, float]]:
    return [(f"m{j}", index * 10 + j + 0.25) for j in range(SAMPLES_PER_PUSH)]
