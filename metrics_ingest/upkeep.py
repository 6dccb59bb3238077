"""The service's upkeep beside the requests: the tokens file and certificate read again
(SIGHUP, or a change to the file), push groups expired past their TTL, and the label index
written behind the writer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from functools import partial

from aiohttp import web

from metrics_ingest import slices
from metrics_ingest.inbox import Closed
from metrics_ingest.keys import AUTH, CLOCK, SETTINGS, TLS, WRITER
from metrics_ingest.model import Change
from metrics_ingest.store import StorageError, WriteSession
from metrics_ingest.tokens import TokensFileError

log = logging.getLogger("metrics_ingest.app")

TOKENS_WATCH_SECONDS = 2.0  # how often the tokens file is checked for changes
EXPIRY_SECONDS = 1.0  # how often push groups are checked against their TTL
LABELS_SECONDS = 0.2  # how often the label index is checked for series it lacks


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
        while True:
            await asyncio.sleep(EXPIRY_SECONDS)
            try:
                change = await writer.call(partial(expire_groups, clock(), default_ttl))
            except Closed:
                return
            except StorageError as exc:
                log.warning("group expiry: %s (trying again in %.0f s)", exc, EXPIRY_SECONDS)
                continue
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
