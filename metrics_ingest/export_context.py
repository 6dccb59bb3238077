"""The `/metrics` cache's life in the app: opened once the writer runs, fed by this
server's commits and, from other servers sharing the store, by the change feed (before each
scrape, and every FEED_SECONDS for the background renderer), closed before the database."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from metrics_ingest.export import ExportCache
from metrics_ingest.inbox import Closed
from metrics_ingest.keys import CLOCK, EXPORT, SETTINGS, STORE, WRITER
from metrics_ingest.store import ChangeFeed, StorageError

log = logging.getLogger("metrics_ingest.app")

FEED_SECONDS = 1.0  # how often other servers' changes are taken in between scrapes


async def export_context(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    writer = app[WRITER]

    feed = app[STORE].open_feed()

    async def sync() -> None:
        """Before a scrape: what this server's writer and every other server committed."""
        with contextlib.suppress(Closed):  # a dead writer cannot say; serve what is stored
            await writer.sync()
        if feed is not None:
            for change in await feed.drain():
                export.apply(change)

    reader = await asyncio.to_thread(app[STORE].open_export_reader)
    app[EXPORT] = export = ExportCache(reader, sync, settings.export_window,
                                       settings.export_timestamps, app[CLOCK])
    writer.subscribers.append(export.apply)
    tasks = [asyncio.create_task(export.render_in_background(), name="export-renderer")]
    if feed is not None:
        tasks.append(asyncio.create_task(follow(feed, export), name="change-feed"))
    for task in tasks:
        task.add_done_callback(report_death)
    yield
    async with export.lock:  # no render is running (a thread cannot be cancelled) ...
        died = await cancel(tasks)  # ... so the renderer waits for work, and stops there
        await asyncio.to_thread(reader.close)
        if feed is not None:
            await feed.close()
    if died is not None:
        raise died  # a bug, logged when it happened: the server did not stop cleanly


def report_death(task: asyncio.Task[None]) -> None:
    """Log a background task that ended before it was cancelled, when it happens: only a bug
    ends one (they ride out storage errors); scrapes still render and drain themselves."""
    if not task.cancelled() and task.exception() is not None:
        log.error("%s died; the server goes on without it", task.get_name(),
                  exc_info=task.exception())


async def cancel(tasks: list[asyncio.Task[None]]) -> BaseException | None:
    """Cancel the tasks and wait for them; the first error one died of, if any."""
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    return next((result for result in results if isinstance(result, BaseException)
                 and not isinstance(result, asyncio.CancelledError)), None)


async def follow(feed: ChangeFeed, export: ExportCache) -> None:
    """Until cancelled: other servers' changes into the cache every FEED_SECONDS, so the
    background renderer keeps up with them too (a scrape drains the feed itself first)."""
    failing = False
    while True:
        await asyncio.sleep(FEED_SECONDS)
        try:
            changes = await feed.drain()
        except StorageError as exc:
            if not failing:
                log.warning("change feed: %s (retrying every %.0f s)", exc, FEED_SECONDS)
            failing = True
            continue
        if failing:
            log.info("change feed: connected again")
        failing = False
        for change in changes:
            export.apply(change)
