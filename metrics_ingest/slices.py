"""Work the writer does in slices between batches (store/preparing.py, the SQLite label index
behind the writer): run from the event loop as writer commands, several slices at a time
while no push is waiting, so that a push arriving meanwhile waits one slice at most."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from functools import partial

from metrics_ingest.inbox import Call, Closed, Inbox, StorageFailed
from metrics_ingest.model import Push
from metrics_ingest.store import StorageError, WriteSession
from metrics_ingest.store.preparing import unused
from metrics_ingest.writer import Writer

log = logging.getLogger("metrics_ingest.writer")

STEPS_SECONDS = 0.02  # longest run of work slices between two batches when no push waits


async def steps(writer: Writer, step: Callable[[WriteSession], bool], yielding: bool = False
                ) -> bool | None:
    """Run `step` (one slice of some work: True once the work is done) on the writer
    thread between batches, again and again while no push is waiting, for up to
    STEPS_SECONDS; returns its last answer. `yielding` work (the label index) gives way to
    other commands waiting (a big push being prepared): None when it ran no step."""
    return await writer.call(partial(repeat_while_idle, writer.inbox, step, yielding))


def repeat_while_idle(inbox: Inbox, step: Callable[[WriteSession], bool], yielding: bool,
                      session: WriteSession) -> bool | None:
    if yielding and inbox.commands:
        return None
    deadline = time.perf_counter() + STEPS_SECONDS
    while True:
        done = step(session)
        if done or inbox.pushes or (yielding and inbox.commands) or (
                time.perf_counter() > deadline):
            return done
        time.sleep(0)  # the GIL to the event loop, if it waits: it answers pushes meanwhile


async def prepare(writer: Writer, push: Push) -> None:
    """Find or create a big push's series ahead of its commit, slice by slice, so that
    other batches commit between the slices (store/preparing.py). Raises OverBudget,
    StorageFailed or Closed; what was created for the push is then removed again."""
    try:
        while not await steps(writer, partial(prepare_slice, push)):
            pass
    except StorageError as exc:
        abandon(writer, push)
        raise StorageFailed(f"the database refused the write: {exc}") from None
    except BaseException:
        abandon(writer, push)
        raise


def abandon(writer: Writer, push: Push) -> None:
    """A prepared push that will not be stored: remove the series created for it (in the
    background; if that fails, it is logged and the next purge removes them)."""
    created = unused(push)
    if not created:
        return
    call = Call(partial(unprepare, created), writer.loop.create_future())
    call.done.add_done_callback(log_unprepared)
    try:
        writer.inbox.command(call)
    except Closed:
        call.done.cancel()


def prepare_slice(push: Push, session: WriteSession) -> bool:
    return session.prepare(push)


def unprepare(created: list[int], session: WriteSession) -> None:
    session.unprepare(created)


def log_unprepared(done: asyncio.Future[None]) -> None:
    if not done.cancelled() and done.exception() is not None:
        log.warning("series made ahead for a push that was not stored stay until the next "
                    "purge: %s", done.exception())
