"""The writer's one inbox: pushes, bounded by the samples they hold, and the commands run
between batches (purge chunks, probes, calls)."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from queue import SimpleQueue
from typing import Any, TypeVar

from metrics_ingest.model import Push
from metrics_ingest.store import WriteSession

T = TypeVar("T")


class Overloaded(Exception):
    """The inbox cannot take the push now; the client should retry later."""


class Closed(Exception):
    """The service is stopping (or the writer has died) and takes no more work."""


class StorageFailed(Exception):
    """The transaction holding the push failed; nothing of it was stored."""


@dataclass(eq=False)
class Call:
    """`fn(session)` on the writer thread between batches (probes, syncs, tests' faults)."""

    fn: Callable[[WriteSession], Any]
    done: asyncio.Future[Any]


@dataclass(eq=False)
class PurgeJob:
    """A retention purge, run one chunk at a time between batches until it is finished."""

    cutoff: int
    done: asyncio.Future[int]
    deleted: int = 0


Command = Call | PurgeJob


class Inbox:
    """The writer's one inbox: pushes, bounded by the samples they hold rather than their
    number, and commands run between batches.

    Made on the event loop (`loop` makes the pushes' futures). The loop puts; the writer
    thread takes, and sleeps while there is nothing to do. `lock` guards everything here; a
    sleeping writer is woken with one token on a SimpleQueue. Both are C-level:
    threading.Condition runs five Python calls per put, on the loop thread, for every push.
    """

    def __init__(self, max_samples: int) -> None:
        self.max_samples = max_samples
        self.samples = 0
        self.closed = False
        self.lock = threading.Lock()
        self.loop = asyncio.get_running_loop()
        self.pushes: deque[Push] = deque()
        self.commands: deque[Command] = deque()
        self._wake: SimpleQueue[None] = SimpleQueue()
        self._sleeping = False

    def put(self, push: Push) -> None:
        """Queue a push whole, or raise Overloaded/Closed without queueing any of it."""
        with self.lock:
            if self.closed:
                raise Closed("the service is shutting down")
            if self.samples + push.samples > self.max_samples:
                raise Overloaded(f"the write queue is full ({self.samples} samples waiting)")
            self.pushes.append(push)
            self.samples += push.samples
            if self._sleeping:
                self._wake_writer()

    def command(self, command: Command) -> None:
        """Queue a command; raises Closed once the writer has stopped."""
        with self.lock:
            if self.closed:
                raise Closed("the writer has stopped")
            self.commands.append(command)
            self._wake_writer()

    def _wake_writer(self) -> None:
        if self._sleeping:
            self._sleeping = False
            self._wake.put(None)

    def wait_for_work(self) -> None:
        """On the writer thread: return once there is a push or a command, or it closed."""
        while True:
            with self.lock:
                if self.pushes or self.commands or self.closed:
                    return
                self._sleeping = True
            self._wake.get()

    def take(self, max_samples: int) -> list[Push]:
        """Whole pushes from the front totalling at most `max_samples` (at least one, if any)."""
        taken: list[Push] = []
        total = 0
        with self.lock:
            pushes = self.pushes
            while pushes:
                size = pushes[0].samples
                if taken and total + size > max_samples:
                    break
                taken.append(pushes.popleft())
                total += size
            self.samples -= total
        return taken

    def next_command(self) -> Command | None:
        with self.lock:
            return self.commands.popleft() if self.commands else None

    def close(self) -> list[Push | Command]:
        """Take no more work; returns what was still waiting (empty when drained)."""
        with self.lock:
            self.closed = True
            left: list[Push | Command] = [*self.pushes, *self.commands]
            self.pushes.clear()
            self.commands.clear()
            self.samples = 0
            self._wake_writer()
        return left

    def finish(self) -> None:
        """Stop taking work but let the writer drain what is waiting."""
        with self.lock:
            self.closed = True
            self._wake_writer()


def resolve(future: asyncio.Future[T], result: T) -> None:
    """Resolve a future with the writer thread's outcome, unless its waiter gave up."""
    if not future.done():
        future.set_result(result)


def reject(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
