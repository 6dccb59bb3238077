"""The service's upkeep beside the requests: the tokens file and certificate read again
(SIGHUP, or a change to the file), push groups expired past their TTL, and the label index
and the packed sample blocks written behind the writer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from aiohttp import web

from metrics_ingest import slices
from metrics_ingest.inbox import Closed
from metrics_ingest.keys import AUTH, CLOCK, QUERIES, SETTINGS, STORE, TELEMETRY, TLS, WRITER
from metrics_ingest.model import Change
from metrics_ingest.outages import OutageLog
from metrics_ingest.store import StorageError, WriteSession
from metrics_ingest.store.sample_arrays import GRACE_SECONDS, Plan, Slice
from metrics_ingest.tokens import TokensFileError

T = TypeVar("T")

log = logging.getLogger("metrics_ingest.app")

TOKENS_WATCH_SECONDS = 2.0  # how often the tokens file is checked for changes
EXPIRY_SECONDS = 1.0  # how often push groups are checked against their TTL
LABELS_SECONDS = 0.2  # how often the label index is checked for series it lacks
BLOCKS_SECONDS = 1.0  # how often the sample blocks are checked for a closed window
BLOCKS_BUSY_SHARE = 0.5  # the process's CPU (cores) above which no block is built: a backfill
# pushed at full speed (bench W3) lost a third of its rate to the builder chasing it
BLOCKS_QUERY_QUIET = 1.0  # seconds without a PromQL query before a block is built...
BLOCKS_QUERY_PATIENCE = 30.0  # ...unless queries have kept it waiting this long
BLOCKS_BUSY_BATCHES = 10  # batches of pushes committed while one window was built, above
# which the builder looks at how busy the process is again before the next


def reload_files(app: web.Application, force: bool = True) -> None:
    """SIGHUP: read the tokens file (and, when serving HTTPS, the certificate) again. A bad
    file keeps what is in use, and says why."""
    policy = app[AUTH]
    try:
        reloaded = policy.reload(force)
    except TokensFileError as exc:
        log.error("tokens file not reloaded, the previous tokens stay in use: %s", exc)
    else:
        if reloaded:
            log.info("tokens file %s loaded: %d tokens", policy.tokens_file,
                     len(policy.principals) - len(policy.fixed))
    if force and TLS in app:
        try:
            app[TLS].reload()
        except (OSError, ValueError) as exc:
            log.error("TLS certificate not reloaded, the previous one stays in use: %s", exc)
        else:
            log.info("TLS certificate %s loaded", app[TLS].cert)


async def tokens_context(app: web.Application) -> AsyncIterator[None]:
    """With a tokens file: look for changes to it every TOKENS_WATCH_SECONDS."""
    if app[AUTH].tokens_file is None:
        yield
        return

    async def watch() -> None:
        while True:
            await asyncio.sleep(TOKENS_WATCH_SECONDS)
            reload_files(app, force=False)

    task = asyncio.create_task(watch(), name="tokens-file-watch")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def expire_groups(now: float, default_ttl: float, session: WriteSession) -> Change | None:
    return session.expire_groups(now, default_ttl)


async def expiry_context(app: web.Application) -> AsyncIterator[None]:
    """Every EXPIRY_SECONDS: Pushgateway-API groups past their TTL stop being exported."""
    writer = app[WRITER]
    default_ttl = app[SETTINGS].group_ttl
    clock = app[CLOCK]

    async def sweep() -> None:
        outage = OutageLog(log, "group expiry", logging.WARNING)  # (said once, its end once)
        while True:
            await asyncio.sleep(EXPIRY_SECONDS)
            try:
                change = await writer.call(partial(expire_groups, clock(), default_ttl))
            except Closed:
                return
            except StorageError as exc:
                outage.failed("%s (trying again every %.0f s)", exc, EXPIRY_SECONDS)
                continue
            outage.working()
            if change is not None:
                log.info("%d series of expired push groups no longer exported",
                         len(change.series))
                writer.publish(change)

    task = asyncio.create_task(sweep(), name="group-expiry")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def index_labels(session: WriteSession) -> bool:
    """One slice; True once the index is complete."""
    return not session.index_labels()


async def label_index_context(app: web.Application) -> AsyncIterator[None]:
    """The label index brought up to date behind the writer, slice by slice between the
    batches (slices.steps), back to back while series are missing from it, then a look every
    LABELS_SECONDS; it gives way to a big push's preparation (readers do without it)."""
    writer = app[WRITER]

    async def catch_up() -> None:
        while True:
            try:
                done = await slices.steps(writer, index_labels, yielding=True)
                more = done is False  # None: it gave way to other work; look again later
            except Closed:
                return
            except StorageError as exc:
                log.warning("label index: %s (trying again in %.1f s)", exc, LABELS_SECONDS)
                more = False
            if not more:
                await asyncio.sleep(LABELS_SECONDS)

    task = asyncio.create_task(catch_up(), name="label-index")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class Busy:
    """The process's CPU time since the last look, as a share of the wall time (all its
    threads: the builder's own work counts, so it also paces itself)."""

    def __init__(self) -> None:
        self.cpu, self.wall = time.process_time(), time.monotonic()

    def share(self) -> float:
        cpu, wall = time.process_time(), time.monotonic()
        share = (cpu - self.cpu) / max(wall - self.wall, 1e-9)
        self.cpu, self.wall = cpu, wall
        return share


def write_blocks(plan: Plan, part: Slice | None, session: WriteSession) -> bool:
    return session.write_blocks(plan, part)


async def blocks_context(app: web.Application) -> AsyncIterator[None]:
    """The packed sample blocks (store/sqlite/blocks.py) brought up to date behind the
    writer: each window up to GRACE_SECONDS ago read on a worker thread and committed a
    slice at a time between the batches, once pushes below what the blocks hold (or
    deletions) have stopped for GRACE_SECONDS; a look every BLOCKS_SECONDS while the process
    is not busy. Engines without blocks: nothing."""
    builder = app[STORE].open_block_builder()
    if builder is None:
        yield
        return
    writer = app[WRITER]
    clock = app[CLOCK]
    queries = app[QUERIES]
    # Every call of the builder on one thread of its own, its close() last: a call a
    # cancelled task was awaiting still runs, and closing its connection beside it crashed.
    thread = ThreadPoolExecutor(1, thread_name_prefix="metrics-ingest-blocks")

    async def off_loop(fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.wrap_future(thread.submit(fn, *args))

    waiting_since: float | None = None
    flushes = app[TELEMETRY].flush_duration  # (its count: the batches committed)
    keep_seconds = app[SETTINGS].retention_days * 86400

    async def window(plan: Plan) -> None:
        parts = builder.slices(plan)
        try:
            while (part := await off_loop(next, parts, None)) is not None:
                if not await writer.call(partial(write_blocks, plan, part)):
                    return  # samples under it changed: planned again once quiet
        finally:
            await off_loop(parts.close)

    def queries_first() -> bool:
        """A query runs or just ran (dashboards ask in bursts): the builder waits, for at
        most BLOCKS_QUERY_PATIENCE at a time. W9's range query had one slow round in 15
        (~2.5x), when the open window's step ran beside it."""
        nonlocal waiting_since
        if queries.quiet_for() >= BLOCKS_QUERY_QUIET:
            waiting_since = None
            return False
        if waiting_since is None:
            waiting_since = time.monotonic()
        return time.monotonic() - waiting_since < BLOCKS_QUERY_PATIENCE

    async def catch_up() -> None:
        seen: int | None = None
        changed_at = -math.inf
        busy = Busy()
        while True:
            await asyncio.sleep(BLOCKS_SECONDS)
            try:
                epoch = await off_loop(builder.epoch)
                if seen is not None and epoch != seen:
                    changed_at = clock()
                seen = epoch
                if busy.share() > BLOCKS_BUSY_SHARE or queries_first():
                    continue  # pushes and queries first: readers do without the blocks
                batches = flushes.count
                wrote = False
                while clock() - changed_at >= GRACE_SECONDS and (
                        plan := await off_loop(builder.plan, int(clock()),
                                               int(clock()) - keep_seconds)):
                    if (await writer.call(partial(write_blocks, plan, None))
                            and plan.window is not None):
                        await window(plan)
                        wrote = True
                    if (await off_loop(builder.epoch) != seen
                            or flushes.count - batches > BLOCKS_BUSY_BATCHES
                            or queries_first()):
                        break  # pushes or a query came meanwhile: look again
                    batches = flushes.count
                if wrote:
                    await off_loop(builder.settle)
            except Closed:
                return
            except StorageError as exc:
                log.warning("sample blocks: %s (trying again in %.0f s)", exc, BLOCKS_SECONDS)

    task = asyncio.create_task(catch_up(), name="sample-blocks")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await off_loop(builder.close)
    thread.shutdown(wait=False)
