"""The single write owner: one thread running the inbox (pushes, purge chunks, probes, calls)
against the store's write session with group commit, and a change record published after
every commit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar, cast

from metrics_ingest.committer import Committer
from metrics_ingest.config import Synchronous
from metrics_ingest.inbox import (
    Call,
    Closed,
    Command,
    Inbox,
    PurgeJob,
    StorageFailed,
    reject,
    resolve,
)
from metrics_ingest.model import EVERYTHING, Change, Push, PushRefused
from metrics_ingest.store import StorageError, Store, WriteSession
from metrics_ingest.telemetry import Telemetry
from metrics_ingest.writer_health import WriterHealth

log = logging.getLogger("metrics_ingest.writer")

T = TypeVar("T")


class Writer:
    """Owns the store's write session and every write made through it.

    Ordering: pushes commit in inbox order; a batch never splits a push. Failure: a failed
    transaction is rolled back whole, its pushes fail with StorageFailed and the writer
    carries on with the next batch. After every commit, purge chunk or noticed outside
    commit, the change is published to the subscribers (on the event loop, in order).

    The writer thread runs its own loop: it wakes when work arrives, commits batches back to
    back, and runs one command between batches (once every batch is committed: a session
    may leave a batch's COMMIT to the committer thread, committer.py, while it writes the
    next). The event loop only hears of each outcome
    (call_soon_threadsafe). When the event loop handed over every batch instead, the writer
    idled for a loop iteration before each commit and requests moved in lockstep with
    commits (bench/README.md, "Writer").
    """

    def __init__(self, store: Store, synchronous: Synchronous, telemetry: Telemetry,
                 batch_max_samples: int, queue_max_samples: int) -> None:
        self.store = store
        self.synchronous = synchronous
        self.telemetry = telemetry
        self.batch_max_samples = batch_max_samples
        self.inbox = Inbox(queue_max_samples)
        self.loop = self.inbox.loop
        # Queue a push for the next batch; raises Overloaded or Closed. (The inbox's own
        # method, bound once: this runs for every push.)
        self.submit: Callable[[Push], None] = self.inbox.put
        self.subscribers: list[Callable[[Change], None]] = []
        self.health = WriterHealth()
        self.alive = False
        self.in_flight = 0  # samples in the transaction being committed now
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Future[None] = self.loop.create_future()
        self._in_hand: list[Push] = []  # a batch whose transaction died of a bug
        self.committer = Committer(self)

    # -- on the event loop -------------------------------------------------------------------

    @property
    def queued_samples(self) -> int:
        return self.inbox.samples

    async def start(self) -> None:
        """Open the write session on the writer's own thread and start serving the inbox;
        raises what opening the session raised."""
        opened: asyncio.Future[None] = self.loop.create_future()
        self._thread = threading.Thread(target=self._main, args=(opened,),
                                        name="metrics-ingest-writer")
        self.alive = True
        self._thread.start()
        try:
            await opened
        except BaseException:
            self.alive = False
            raise

    async def stop(self) -> None:
        """Take no more work, commit and answer everything waiting, close the session."""
        self.inbox.finish()
        try:
            await self._stopped
        except Exception:
            log.exception("the writer had failed; queued pushes were answered 503")
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)

    def request_purge(self, cutoff: int) -> asyncio.Future[int]:
        """Delete samples older than `cutoff`, in chunks between batches; resolves to the count."""
        job = PurgeJob(cutoff, self.loop.create_future())
        self.inbox.command(job)
        return job.done

    async def call(self, fn: Callable[[WriteSession], T]) -> T:
        """Run `fn(session)` on the writer thread between batches; its errors propagate.

        Raises Closed once the writer has stopped.
        """
        call = Call(fn, self.loop.create_future())
        self.inbox.command(call)
        return cast(T, await call.done)

    async def probe(self) -> None:
        """Prove the store takes writes now; on success the writer is healthy again.

        Raises StorageFailed with the engine's words otherwise.
        """
        try:
            await self.call(lambda session: session.probe(int(time.time())))
        except StorageError as exc:
            self.health.bad(exc)
            raise StorageFailed(f"the database refused a probe write: {exc}") from None
        except Closed as exc:
            raise StorageFailed(str(exc)) from None
        self.health.good()

    async def watch(self, interval: float) -> None:
        """Until cancelled: every `interval` seconds, make sure the store is still the one
        opened and answers (a database file deleted or replaced underneath, or a database
        server gone, is noticed within seconds)."""
        while self.health.lost is None:
            await asyncio.sleep(interval)
            try:
                await self.call(lambda session: session.check())
            except StorageError:
                pass  # (the writer is marked unhealthy, or lost, by health.bad)
            except Closed:
                return

    async def sync(self) -> None:
        """Publish a change for everything if another process wrote to the store since the
        last look (`db query`, `metrics-ingest purge`), so readers' caches are current."""
        if await self.call(lambda session: session.outside_change()):
            self.publish(EVERYTHING)

    def publish(self, change: Change) -> None:
        for subscriber in self.subscribers:
            subscriber(change)

    # -- on the writer thread ----------------------------------------------------------------

    def _main(self, opened: asyncio.Future[None]) -> None:
        loop = self.loop
        try:
            session = self.store.open_writer(self.synchronous)
        except BaseException as exc:  # noqa: BLE001 - a thread boundary: the loop is told
            loop.call_soon_threadsafe(reject, opened, exc)
            loop.call_soon_threadsafe(self._ended, None)
            return
        loop.call_soon_threadsafe(resolve, opened, None)
        error: BaseException | None = None
        try:
            self._serve(session)
        except BaseException as exc:  # noqa: BLE001 - a thread boundary: the loop is told
            error = exc
        finally:
            self.committer.close()
            with contextlib.suppress(Exception):
                session.close()
            loop.call_soon_threadsafe(self._ended, error)

    def _serve(self, session: WriteSession) -> None:
        """Batches first, one command between them, until the inbox is closed and empty."""
        inbox = self.inbox
        while True:
            inbox.wait_for_work()
            try:
                with session.turn():  # (what arrives while this writer waits joins the batch)
                    pushes = inbox.take(self.batch_max_samples)
                    if pushes:
                        self._commit(session, pushes)
            except StorageError as exc:  # the turn not had in time: the waiting batch fails
                pushes = inbox.take(self.batch_max_samples)
                if pushes:
                    self.committer.answer(self._failed, pushes, exc)
            command = inbox.next_command()
            if command is not None:
                self._run(session, command)
            elif not pushes and inbox.closed:
                return

    def _commit(self, session: WriteSession, pushes: list[Push]) -> None:
        started = time.perf_counter()
        self.in_flight = sum(push.samples for push in pushes)
        try:
            change = session.commit(pushes)
        except StorageError as exc:
            self.committer.answer(self._failed, pushes, exc)
        except BaseException:
            # A bug: _ended answers the pushes in hand once the writer is marked dead.
            self._in_hand = pushes
            raise
        else:
            self.committer.committed(change, pushes, started)
        finally:
            self.in_flight = 0

    def _run(self, session: WriteSession, command: Command) -> None:
        self.committer.drain()
        if isinstance(command, PurgeJob):
            self._purge_step(session, command)
            return
        try:
            result = command.fn(session)
        except Exception as exc:  # noqa: BLE001 - the caller handles it; the writer goes on
            if isinstance(exc, StorageError):
                self.loop.call_soon_threadsafe(self.health.bad, exc)
            self.loop.call_soon_threadsafe(reject, command.done, exc)
        else:
            self.loop.call_soon_threadsafe(resolve, command.done, result)

    def _purge_step(self, session: WriteSession, job: PurgeJob) -> None:
        """One chunk; an unfinished job goes to the back of the commands, unless the writer is
        stopping, which interrupts it (the next scheduled purge finishes the work)."""
        try:
            deleted, finished, change = session.purge_chunk(job.cutoff)
        except StorageError as exc:
            log.error("purge failed after %d samples: %s", job.deleted, exc)
            self.loop.call_soon_threadsafe(self._purge_failed, job, exc)
            return
        job.deleted += deleted
        interrupted = False
        if not finished:
            with self.inbox.lock:
                interrupted = self.inbox.closed
                if not interrupted:
                    self.inbox.commands.append(job)
        self.loop.call_soon_threadsafe(self._purged, job, finished, change, interrupted)

    # -- back on the event loop --------------------------------------------------------------

    def _committed(self, pushes: list[Push], seconds: float, change: Change) -> None:
        self.health.good()
        self.publish(change)
        self.telemetry.record_batch(pushes, seconds)
        for push in pushes:
            refused = push.refused
            if refused is not None:
                reject(push.done, refused if isinstance(refused, PushRefused)
                       else PushRefused(refused))
            elif not push.done.done():
                push.done.set_result(None)

    def _failed(self, pushes: list[Push], exc: StorageError) -> None:
        self.health.bad(exc)
        self.publish(EVERYTHING)  # the session may have reloaded its index meanwhile
        self.health.outage.failed("a batch failed, its %d pushes answered 503: %s",
                                  len(pushes), exc)
        for push in pushes:
            reject(push.done, StorageFailed(f"the database refused the write: {exc}"))

    def _purged(self, job: PurgeJob, finished: bool, change: Change, interrupted: bool) -> None:
        self.publish(change)
        if finished:
            resolve(job.done, job.deleted)
        elif interrupted:
            reject(job.done, Closed(f"stopped after purging {job.deleted} samples"))

    def _purge_failed(self, job: PurgeJob, exc: StorageError) -> None:
        self.publish(EVERYTHING)
        reject(job.done, StorageFailed(f"purge failed: {exc}"))

    def _ended(self, error: BaseException | None) -> None:
        """The writer thread is gone: whatever still waits fails instead of hanging."""
        self.alive = False
        abandoned: list[Push | Command] = [*self._in_hand, *self.inbox.close()]
        for item in abandoned:
            if isinstance(item, Push):
                reject(item.done, Closed("the writer stopped"))
            else:
                reject(item.done, Closed("the writer stopped before this finished"))
        if error is not None:
            log.critical("the writer stopped: every push is answered 503 until the service "
                         "is restarted", exc_info=error)
            reject(self._stopped, error)
        else:
            resolve(self._stopped, None)

