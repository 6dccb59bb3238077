"""The writer's committer thread: where an engine's `Later` batches commit (PostgreSQL's
overlapped tails, store/postgres/tails.py), one at a time, in batch order, and where every
batch is answered while one of them is still committing, so answers keep batch order too."""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from metrics_ingest.model import Change, Push
from metrics_ingest.store import Later, StorageError

if TYPE_CHECKING:
    from metrics_ingest.writer import Writer

log = logging.getLogger("metrics_ingest.writer")


class Committer:
    """Started on the first Later: engines that never hand one over (SQLite) cost nothing."""

    def __init__(self, writer: Writer) -> None:
        self.writer = writer
        self._pool: ThreadPoolExecutor | None = None
        self._last: Future[None] | None = None  # the newest work handed to the thread

    def committed(self, result: Change | Later, pushes: list[Push], started: float) -> None:
        """Answer a batch the session committed, or commit `result` (a Later) after
        everything handed over before it, then answer its pushes."""
        if not isinstance(result, Later):
            self.answer(self.writer._committed, pushes, time.perf_counter() - started, result)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="metrics-ingest-commit")
        self._last = self._pool.submit(self._finish, result, pushes, started)

    def _finish(self, later: Later, pushes: list[Push], started: float) -> None:
        writer = self.writer
        try:
            change = later.finish()
        except StorageError as exc:
            writer.loop.call_soon_threadsafe(writer._failed, pushes, exc)
        except Exception as exc:
            log.exception("committing a batch failed")
            writer.loop.call_soon_threadsafe(writer._failed, pushes,
                                             StorageError(f"commit failed: {exc!r}"))
        else:
            writer.loop.call_soon_threadsafe(writer._committed, pushes,
                                             time.perf_counter() - started, change)

    def answer(self, fn: Callable[..., None], *args: Any) -> None:
        """Call `fn(*args)` on the event loop, after the answers of batches still committing."""
        last = self._last
        if last is None or last.done():  # (done: its answer is already on the loop's queue)
            self.writer.loop.call_soon_threadsafe(fn, *args)
        else:
            assert self._pool is not None
            self._last = self._pool.submit(self._answer, fn, *args)

    def _answer(self, fn: Callable[..., None], *args: Any) -> None:
        self.writer.loop.call_soon_threadsafe(fn, *args)

    def drain(self) -> None:
        """Until every batch handed over is committed (or failed) and answered."""
        if self._last is not None:
            concurrent.futures.wait([self._last])

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
