"""The single writer: takes queued pushes in batches, commits each batch in one transaction
(group commit), and only then resolves the pushes; runs retention purges in chunks between."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain, repeat
from operator import attrgetter
from queue import SimpleQueue
from typing import Any, TypeVar, cast

from metrics_ingest import storage
from metrics_ingest.pushgateway import GroupPush
from metrics_ingest.storage import WriteConnection
from metrics_ingest.telemetry import Telemetry
from metrics_ingest.validation import SampleGroup

log = logging.getLogger("metrics_ingest.writer")

T = TypeVar("T")

PURGE_CHUNK_ROWS = 5000
MAX_TOUCHED = 100_000  # beyond this, /metrics reloads everything instead

NewSeries = tuple[int, str, str, str]  # (id, metric_name, source, labels)
LatestRow = tuple[int, int, float]  # (series_id, timestamp, value)
NO_SERIES: dict[str, int] = {}


class Overloaded(Exception):
    """The queue cannot take the push now; the client should retry later."""


class Closed(Exception):
    """The service is stopping (or the writer has died) and takes no more pushes."""


class StorageFailed(Exception):
    """The transaction holding the push failed; nothing of it was stored."""


@dataclass(eq=False)
class Push:
    """A validated push waiting for its commit; `done` resolves after the commit (or fails)."""

    groups: list[SampleGroup]
    samples: int
    received_at: float
    done: asyncio.Future[None]
    group: GroupPush | None = None  # a Pushgateway-API push: what it does to its group


@dataclass(eq=False)
class PurgeJob:
    cutoff: int
    done: asyncio.Future[int]
    deleted: int = 0


@dataclass(eq=False)
class Call:
    """Work on the writer's connection between batches (the readiness probe, tests' faults)."""

    fn: Callable[[sqlite3.Connection], Any]
    done: asyncio.Future[Any]


class PushQueue:
    """Pushes waiting for the writer, bounded by the samples they hold rather than their number.

    Made on the event loop (`loop` makes the pushes' futures). Handlers put on the loop; the
    writer thread takes, and sleeps while there is nothing to do. `lock` guards the queue and
    the writer's other inboxes; a sleeping writer is woken with one token on a SimpleQueue.
    Both are C-level: threading.Condition runs five Python calls per put, on the loop thread,
    for every push.
    """

    def __init__(self, max_samples: int) -> None:
        self.max_samples = max_samples
        self.samples = 0
        self.closed = False
        self.lock = threading.Lock()
        self.loop = asyncio.get_running_loop()
        self._pushes: deque[Push] = deque()
        self._wake: SimpleQueue[None] = SimpleQueue()
        self._sleeping = False

    def put(self, push: Push) -> None:
        """Queue a push whole, or raise Overloaded/Closed without queueing any of it."""
        with self.lock:
            if self.closed:
                raise Closed("the service is shutting down")
            if self.samples + push.samples > self.max_samples:
                raise Overloaded(f"the write queue is full ({self.samples} samples waiting)")
            self._pushes.append(push)
            self.samples += push.samples
            if self._sleeping:
                self.wake_writer()

    def wake_writer(self) -> None:
        """Wake the writer if it sleeps; call with `lock` held, after adding its work."""
        if self._sleeping:
            self._sleeping = False
            self._wake.put(None)

    def sleep_until(self, has_work: Callable[[], object]) -> None:
        """On the writer thread: return once `has_work()` (checked under the lock) is true."""
        while True:
            with self.lock:
                if has_work():
                    return
                self._sleeping = True
            self._wake.get()

    def take(self, max_samples: int) -> list[Push]:
        """Whole pushes from the front totalling at most `max_samples` (always at least one)."""
        taken: list[Push] = []
        total = 0
        with self.lock:
            while self._pushes:
                size = self._pushes[0].samples
                if taken and total + size > max_samples:
                    break
                taken.append(self._pushes.popleft())
                total += size
            self.samples -= total
        return taken

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.wake_writer()

    def __len__(self) -> int:
        return len(self._pushes)


class SeriesIndex:
    """Series ids by (source, labels) then metric name; used only on the writer thread.

    Ids are allocated here, which is safe because this is the only writer. If another
    connection commits (`metrics-ingest purge` beside the server), PRAGMA data_version changes
    and the map is reloaded before it is used again.
    """

    def __init__(self) -> None:
        self.ids: dict[tuple[str, str], dict[str, int]] = {}
        self.next_id = 1
        self.data_version = -1
        self._pending: dict[tuple[str, str], dict[str, int]] = {}

    def refresh(self, db: sqlite3.Connection) -> bool:
        """Reload the map if another connection has committed since; True if it did."""
        version = storage.data_version(db)
        if version == self.data_version:
            return False
        self.reload(db)
        self.data_version = version
        return True

    def reload(self, db: sqlite3.Connection) -> None:
        ids: dict[tuple[str, str], dict[str, int]] = {}
        highest = 0
        for (name, source, labels), series_id in storage.load_series(db).items():
            ids.setdefault((source, labels), {})[name] = series_id
            highest = max(highest, series_id)
        self.ids = ids
        self.next_id = highest + 1

    def rows(self, pushes: list[Push]) -> tuple[list[NewSeries], list[int | float],
                                                 list[int | float]]:
        """Series to create, then sample rows and the newest sample of each series in the
        batch, both flattened for storage.insert_rows.

        New series are not adopted until `adopt` (after the commit), so a rolled-back batch
        leaves the map as the database is. Columns are gathered group by group and zipped
        once: per-group iterators cost a third of a small batch's commit (bench/README.md).
        """
        new_series: list[NewSeries] = []
        self._pending = {}
        # Oldest first (a stable sort keeps queue order among equal timestamps), so a later
        # group's sample of a series is always the newer one and can simply overwrite.
        groups = sorted((group for push in pushes for group in push.groups),
                        key=attrgetter("timestamp"))
        found: list[int | None] = []
        stamps: list[int] = []
        values: list[float] = []
        known = self.ids
        for group in groups:
            found += map(known.get((group.source, group.labels), NO_SERIES).get, group.names)
            stamps += repeat(group.timestamp, len(group.names))
            values += group.values
        ids = (self._with_new_ids(groups, found, new_series) if None in found
               else cast(list[int], found))
        newest = dict(zip(ids, zip(ids, stamps, values, strict=True), strict=True))
        return (new_series, list(chain.from_iterable(zip(stamps, ids, values, strict=True))),
                list(chain.from_iterable(newest.values())))

    def _with_new_ids(self, groups: list[SampleGroup], found: list[int | None],
                      new_series: list[NewSeries]) -> list[int]:
        """Fill in the ids of series not yet in the map, allocating the unseen ones."""
        filled = list(found)
        at = 0
        for group in groups:
            pending = self._pending.setdefault((group.source, group.labels), {})
            for offset, name in enumerate(group.names, at):
                if filled[offset] is None:
                    series_id = pending.get(name)
                    if series_id is None:
                        series_id = pending[name] = self.next_id + len(new_series)
                        new_series.append((series_id, name, group.source, group.labels))
                    filled[offset] = series_id
            at += len(group.names)
        return cast(list[int], filled)

    def id_of(self, source: str, labels: str, name: str) -> int:
        """The id of a series of the batch being written (known, or new in this batch)."""
        key = (source, labels)
        found = self.ids.get(key, NO_SERIES).get(name)
        return found if found is not None else self._pending[key][name]

    def adopt(self, new_series: list[NewSeries]) -> None:
        for series_id, name, source, labels in new_series:
            self.ids.setdefault((source, labels), {})[name] = series_id
        self.next_id += len(new_series)
        self._pending = {}


def apply_group(db: sqlite3.Connection, series: SeriesIndex, push: Push) -> list[int]:
    """A Pushgateway-API push's effect on its group, in the transaction of its samples;
    returns the series it hid or pinned."""
    group = push.group
    assert group is not None
    members = {series.id_of(sample_group.source, sample_group.labels, name):
               group.families[name]
               for sample_group in push.groups for name in sample_group.names}
    return storage.apply_group_push(db, group.op, group.grouping.source, group.grouping.key,
                                    members, group.pushed_families, push.received_at)


class Writer:
    """Owns the write connection and every write made through it.

    Ordering: pushes commit in queue order; a batch never splits a push. Failure: a failed
    transaction is rolled back whole, its pushes fail with StorageFailed and the writer carries
    on with the next batch.

    The writer thread runs its own loop: it wakes when a push is queued, commits batches back
    to back, and runs purge chunks and probes between them. The event loop only hears of each
    outcome (call_soon_threadsafe, in order) to answer the pushes. When the event loop handed
    over every batch instead, the writer idled for a loop iteration before each commit and
    requests moved in lockstep with commits (bench/README.md, "Writer").
    """

    def __init__(
        self,
        db: WriteConnection,
        queue: PushQueue,
        telemetry: Telemetry,
        batch_max_samples: int,
    ) -> None:
        self.db = db
        self.queue = queue
        self.telemetry = telemetry
        self.batch_max_samples = batch_max_samples
        self.healthy = True
        self.alive = False
        self.in_flight = 0  # samples in the transaction being committed now
        self.generation = 0  # counts committed changes: readers' caches compare it
        self.last_error: str | None = None
        self.series = SeriesIndex()
        self._purges: deque[PurgeJob] = deque()
        self._calls: deque[Call] = deque()
        # What /metrics must read again: series whose latest row changed since it last asked,
        # or everything (after a purge, or another connection's commit).
        self.touched: set[int] = set()
        self.touched_everything = False
        self._in_hand: list[Push] = []  # a batch whose transaction died of a bug

    async def run(self) -> None:
        """Commit batches until the queue is closed and drained, purges and calls included.

        If the writer dies on an unexpected error, queued pushes fail (503) instead of hanging,
        and the queue refuses new ones.
        """
        self.alive = True
        loop = asyncio.get_running_loop()
        try:
            await self.db.call(lambda db: self._serve(db, loop))
        finally:
            self.alive = False
            self.queue.close()
            abandoned = self._in_hand
            while len(self.queue):
                abandoned += self.queue.take(self.queue.max_samples)
            for push in abandoned:
                if not push.done.done():
                    push.done.set_exception(Closed("the writer stopped"))
            for job in self._purges:
                if not job.done.done():
                    job.done.set_exception(Closed("the writer stopped before the purge finished"))
            for call in self._calls:
                if not call.done.done():
                    call.done.set_exception(Closed("the writer stopped"))

    def request_purge(self, cutoff: int) -> asyncio.Future[int]:
        """Delete samples older than `cutoff`, in chunks between batches; resolves to the count."""
        job = PurgeJob(cutoff, asyncio.get_running_loop().create_future())
        with self.queue.lock:
            self._purges.append(job)
            self.queue.wake_writer()
        return job.done

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(connection)` on the writer thread between batches; its errors propagate.

        Raises Closed once the writer has stopped.
        """
        call = Call(fn, asyncio.get_running_loop().create_future())
        with self.queue.lock:
            if not self.alive:
                raise Closed("the writer has stopped")
            self._calls.append(call)
            self.queue.wake_writer()
        return cast(T, await call.done)

    async def probe(self) -> None:
        """Prove the database takes writes now; on success the writer is healthy again.

        Raises StorageFailed with SQLite's words otherwise.
        """
        try:
            await self.call(lambda db: storage.write_probe(db, int(time.time())))
        except sqlite3.Error as exc:
            self.healthy = False
            self.last_error = str(exc)
            raise StorageFailed(f"the database refused a probe write: {exc}") from None
        except Closed as exc:
            raise StorageFailed(str(exc)) from None
        self.healthy = True
        self.last_error = None

    def take_touched(self) -> tuple[set[int], bool]:
        """For /metrics: the series changed since the previous call, or True for everything."""
        touched, self.touched = self.touched, set()
        everything, self.touched_everything = self.touched_everything, False
        return touched, everything

    # -- on the writer thread ---------------------------------------------------------------

    def _serve(self, db: sqlite3.Connection, loop: asyncio.AbstractEventLoop) -> None:
        """The writer thread's loop: batches first, a purge chunk or a call between them, until
        the queue is closed and nothing is left."""
        queue = self.queue
        while True:
            queue.sleep_until(lambda: len(queue) or self._purges or self._calls or queue.closed)
            if queue.closed and not (len(queue) or self._purges or self._calls):
                return
            self._commit_next(db, loop)
            if self._calls:
                self._run_call(db, loop, self._calls.popleft())
            if self._purges:
                self._purge_step(db, loop, self._purges[0])

    def _commit_next(self, db: sqlite3.Connection, loop: asyncio.AbstractEventLoop) -> None:
        pushes = self.queue.take(self.batch_max_samples)
        if not pushes:
            return
        started = time.perf_counter()
        self.in_flight = sum(push.samples for push in pushes)
        try:
            touched, reloaded = self._transaction(db, pushes)
        except sqlite3.Error as exc:
            loop.call_soon_threadsafe(self._fail, pushes, exc)
        except BaseException:
            # A bug: run() answers the pushes in hand once the writer is marked dead.
            self._in_hand = pushes
            raise
        else:
            loop.call_soon_threadsafe(self._committed, pushes, time.perf_counter() - started,
                                      touched, reloaded)
        finally:
            self.in_flight = 0

    def _transaction(self, db: sqlite3.Connection,
                     pushes: list[Push]) -> tuple[list[int], bool]:
        """Commit one batch; returns the series whose latest row it changed, and whether the
        series map had to be reloaded (another connection committed)."""
        series = self.series
        with storage.immediate_transaction(db):
            reloaded = series.refresh(db)
            new_series, samples, latest = series.rows(pushes)
            storage.insert_rows(db, new_series, samples, latest)
            touched = cast(list[int], latest[0::3])  # (series_id, timestamp, value), flat
            for push in pushes:
                if push.group is not None:
                    touched += apply_group(db, series, push)
        series.adopt(new_series)
        return touched, reloaded

    def _run_call(self, db: sqlite3.Connection, loop: asyncio.AbstractEventLoop,
                  call: Call) -> None:
        try:
            result = call.fn(db)
        except Exception as exc:  # noqa: BLE001 - the caller handles it; the writer goes on
            loop.call_soon_threadsafe(reject, call.done, exc)
        else:
            loop.call_soon_threadsafe(resolve, call.done, result)

    def _purge_step(self, db: sqlite3.Connection, loop: asyncio.AbstractEventLoop,
                    job: PurgeJob) -> None:
        """One chunk of the oldest purge request, in its own short transaction."""
        series = self.series
        try:
            with storage.immediate_transaction(db):
                series.refresh(db)
                deleted, finished = storage.purge_chunk(db, job.cutoff, PURGE_CHUNK_ROWS)
                forgotten = storage.purge_expired_series(db, job.cutoff) if finished else 0
            if forgotten:
                series.reload(db)
        except sqlite3.Error as exc:
            self._purges.popleft()
            log.error("purge failed after %d samples: %s", job.deleted, exc)
            loop.call_soon_threadsafe(self._purge_failed, job,
                                      StorageFailed(f"purge failed: {exc}"))
            return
        job.deleted += deleted
        if finished:
            self._purges.popleft()
        loop.call_soon_threadsafe(self._purged, job, finished)

    # -- back on the event loop -------------------------------------------------------------

    def _committed(self, pushes: list[Push], seconds: float, touched: list[int],
                   reloaded: bool) -> None:
        self.healthy = True
        self.last_error = None
        self.generation += 1
        self.touched.update(touched)
        if reloaded or len(self.touched) > MAX_TOUCHED:
            self.touched_everything = True
        self._record(pushes, seconds)
        for push in pushes:
            if not push.done.done():
                push.done.set_result(None)

    def _purged(self, job: PurgeJob, finished: bool) -> None:
        self.generation += 1
        self.touched_everything = True
        if finished:
            resolve(job.done, job.deleted)

    def _purge_failed(self, job: PurgeJob, exc: StorageFailed) -> None:
        self.touched_everything = True  # the series map may have been reloaded meanwhile
        reject(job.done, exc)

    def _record(self, pushes: list[Push], seconds: float) -> None:
        per_source: dict[str, int] = {}
        total = 0
        for push in pushes:
            for group in push.groups:
                per_source[group.source] = per_source.get(group.source, 0) + len(group.names)
            total += push.samples
        self.telemetry.count_committed(per_source)
        self.telemetry.batch_samples.observe(total)
        self.telemetry.flush_duration.observe(seconds)

    def _fail(self, pushes: list[Push], exc: sqlite3.Error) -> None:
        self.healthy = False
        self.last_error = str(exc)
        self.touched_everything = True  # the series map may have been reloaded meanwhile
        log.error("flush failed, %d pushes answered 503: %s", len(pushes), exc)
        for push in pushes:
            if not push.done.done():
                push.done.set_exception(StorageFailed(f"the database refused the write: {exc}"))


def resolve(future: asyncio.Future[T], result: T) -> None:
    """Resolve a future with the writer thread's outcome, unless its waiter gave up."""
    if not future.done():
        future.set_result(result)


def reject(future: asyncio.Future[T], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
