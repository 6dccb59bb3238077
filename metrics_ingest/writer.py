"""The single writer: takes queued pushes in batches, commits each batch in one transaction
(group commit), and only then resolves the pushes; runs retention purges in chunks between."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections import deque
from dataclasses import dataclass, field

import aiosqlite

from metrics_ingest import storage
from metrics_ingest.storage import SeriesKey
from metrics_ingest.telemetry import Telemetry
from metrics_ingest.validation import Sample

log = logging.getLogger("metrics_ingest.writer")

PURGE_CHUNK_ROWS = 5000


class Overloaded(Exception):
    """The queue cannot take the push now; the client should retry later."""


class Closed(Exception):
    """The service is stopping (or the writer has died) and takes no more pushes."""


class StorageFailed(Exception):
    """The transaction holding the push failed; nothing of it was stored."""


@dataclass(eq=False)
class Push:
    """A validated push waiting for its commit; `done` resolves after the commit (or fails)."""

    samples: list[Sample]
    received_at: float
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


@dataclass(eq=False)
class PurgeJob:
    cutoff: int
    done: asyncio.Future[int]
    deleted: int = 0


class PushQueue:
    """Pushes waiting for the writer, bounded by the samples they hold rather than their number.

    `wake` is set whenever there is something for the writer to look at.
    """

    def __init__(self, max_samples: int) -> None:
        self.max_samples = max_samples
        self.samples = 0
        self.closed = False
        self.wake = asyncio.Event()
        self._pushes: deque[Push] = deque()

    def put(self, push: Push) -> None:
        """Queue a push whole, or raise Overloaded/Closed without queueing any of it."""
        if self.closed:
            raise Closed("the service is shutting down")
        if self.samples + len(push.samples) > self.max_samples:
            raise Overloaded(f"the write queue is full ({self.samples} samples waiting)")
        self._pushes.append(push)
        self.samples += len(push.samples)
        self.wake.set()

    def take(self, max_samples: int) -> list[Push]:
        """Whole pushes from the front totalling at most `max_samples` (always at least one)."""
        taken: list[Push] = []
        total = 0
        while self._pushes:
            size = len(self._pushes[0].samples)
            if taken and total + size > max_samples:
                break
            taken.append(self._pushes.popleft())
            total += size
        self.samples -= total
        return taken

    def close(self) -> None:
        self.closed = True
        self.wake.set()

    def __len__(self) -> int:
        return len(self._pushes)


class Writer:
    """Owns the write connection and every write made through it.

    Ordering: pushes commit in queue order; a batch never splits a push. Failure: a failed
    transaction is rolled back whole, its pushes fail with StorageFailed and the writer carries
    on with the next batch.
    """

    def __init__(
        self,
        conn: aiosqlite.Connection,
        queue: PushQueue,
        telemetry: Telemetry,
        batch_max_samples: int,
    ) -> None:
        self.conn = conn
        self.queue = queue
        self.telemetry = telemetry
        self.batch_max_samples = batch_max_samples
        self.healthy = True
        self.alive = False
        self.in_flight = 0  # samples in the transaction being committed now
        self.last_error: str | None = None
        self._series: dict[SeriesKey, int] = {}
        self._next_series_id = 1
        self._data_version = -1
        self._purges: deque[PurgeJob] = deque()

    async def run(self) -> None:
        """Commit batches until the queue is closed and drained.

        If the loop dies on an unexpected error, queued pushes fail (503) instead of hanging,
        and the queue refuses new ones.
        """
        self.alive = True
        try:
            await self._loop()
        finally:
            self.alive = False
            self.queue.close()
            leftover = self.queue.take(self.queue.samples + 1) if len(self.queue) else []
            for push in leftover:
                if not push.done.done():
                    push.done.set_exception(Closed("the writer stopped"))
            for job in self._purges:
                if not job.done.done():
                    job.done.set_exception(Closed("the writer stopped before the purge finished"))

    async def _loop(self) -> None:
        while True:
            pushes = self.queue.take(self.batch_max_samples)
            if pushes:
                await self._commit(pushes)
            if self._purges:
                await self._purge_step()
            if not pushes and not self._purges:
                if self.queue.closed and not len(self.queue):
                    break
                self.queue.wake.clear()
                if not len(self.queue) and not self.queue.closed:
                    await self.queue.wake.wait()

    def request_purge(self, cutoff: int) -> asyncio.Future[int]:
        """Delete samples older than `cutoff`, in chunks between batches; resolves to the count."""
        job = PurgeJob(cutoff, asyncio.get_running_loop().create_future())
        self._purges.append(job)
        self.queue.wake.set()
        return job.done

    async def _commit(self, pushes: list[Push]) -> None:
        started = time.perf_counter()
        new_series: list[tuple[int, str, str, str]] = []
        self.in_flight = sum(len(push.samples) for push in pushes)
        try:
            await self.conn.execute("BEGIN IMMEDIATE")
            try:
                await self._refresh_series()
                new_series, sample_rows, latest_rows = self._rows(pushes)
                await storage.insert_rows(self.conn, new_series, sample_rows, latest_rows)
                await self.conn.execute("COMMIT")
            except BaseException:
                await self._rollback()
                raise
        except sqlite3.Error as exc:
            self._fail(pushes, exc)
            return
        except BaseException:
            # A bug or a cancellation: the pushes in hand must still get an answer.
            for push in pushes:
                if not push.done.done():
                    push.done.set_exception(Closed("the writer stopped"))
            raise
        finally:
            self.in_flight = 0
        for series_id, name, source, labels in new_series:
            self._series[(name, source, labels)] = series_id
        self._next_series_id += len(new_series)
        self.healthy = True
        self.last_error = None
        self._record(pushes, time.perf_counter() - started)
        for push in pushes:
            if not push.done.done():
                push.done.set_result(None)

    async def _refresh_series(self) -> None:
        """Reload the series map if another connection (e.g. `metrics-ingest purge`) committed."""
        version = await storage.data_version(self.conn)
        if version != self._data_version:
            await self._reload_series()
            self._data_version = version

    async def _reload_series(self) -> None:
        self._series = await storage.load_series(self.conn)
        self._next_series_id = max(self._series.values(), default=0) + 1

    def _rows(
        self, pushes: list[Push]
    ) -> tuple[list[tuple[int, str, str, str]], list[tuple[int, int, float]],
               list[tuple[int, int, float]]]:
        """Series to create, sample rows, and the newest sample of each series in the batch."""
        series = self._series
        pending: dict[SeriesKey, int] = {}
        new_series: list[tuple[int, str, str, str]] = []
        sample_rows: list[tuple[int, int, float]] = []
        newest: dict[int, tuple[int, int, float]] = {}
        next_id = self._next_series_id
        for push in pushes:
            for sample in push.samples:
                key = (sample.name, sample.source, sample.labels)
                series_id = series.get(key) or pending.get(key)
                if series_id is None:
                    series_id = pending[key] = next_id
                    new_series.append((next_id, sample.name, sample.source, sample.labels))
                    next_id += 1
                row = (sample.timestamp, series_id, sample.value)
                sample_rows.append(row)
                current = newest.get(series_id)
                if current is None or sample.timestamp >= current[1]:
                    newest[series_id] = (series_id, sample.timestamp, sample.value)
        return new_series, sample_rows, list(newest.values())

    def _record(self, pushes: list[Push], seconds: float) -> None:
        per_source: dict[str, int] = {}
        total = 0
        for push in pushes:
            for sample in push.samples:
                per_source[sample.source] = per_source.get(sample.source, 0) + 1
            total += len(push.samples)
        self.telemetry.count_committed(per_source)
        self.telemetry.batch_samples.observe(total)
        self.telemetry.flush_duration.observe(seconds)
        log.debug("flush: %d pushes, %d samples in %.1f ms", len(pushes), total, seconds * 1000)

    def _fail(self, pushes: list[Push], exc: sqlite3.Error) -> None:
        self.healthy = False
        self.last_error = str(exc)
        log.error("flush failed, %d pushes answered 503: %s", len(pushes), exc)
        for push in pushes:
            if not push.done.done():
                push.done.set_exception(StorageFailed(f"the database refused the write: {exc}"))

    async def _rollback(self) -> None:
        if self.conn.in_transaction:
            try:
                await self.conn.execute("ROLLBACK")
            except sqlite3.Error as exc:
                log.warning("rollback failed: %s", exc)

    async def _purge_step(self) -> None:
        """One chunk of the oldest purge request, in its own short transaction."""
        job = self._purges[0]
        try:
            await self.conn.execute("BEGIN IMMEDIATE")
            try:
                await self._refresh_series()
                deleted, finished = await storage.purge_chunk(
                    self.conn, job.cutoff, PURGE_CHUNK_ROWS)
                forgotten = 0
                if finished:
                    forgotten = await storage.purge_expired_series(self.conn, job.cutoff)
                await self.conn.execute("COMMIT")
            except BaseException:
                await self._rollback()
                raise
        except sqlite3.Error as exc:
            self._purges.popleft()
            log.error("purge failed after %d samples: %s", job.deleted, exc)
            if not job.done.done():
                job.done.set_exception(StorageFailed(f"purge failed: {exc}"))
            return
        job.deleted += deleted
        if finished:
            self._purges.popleft()
            if forgotten:
                await self._reload_series()
            if not job.done.done():
                job.done.set_result(job.deleted)
