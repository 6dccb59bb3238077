"""Retention: which samples have expired, the scheduled purge (aiocron, UTC), and the CLI purge."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import aiocron
from cronsim import CronSim

from metrics_ingest.inbox import Closed
from metrics_ingest.store import Store
from metrics_ingest.telemetry import Telemetry
from metrics_ingest.writer import Writer

log = logging.getLogger("metrics_ingest.retention")

DAY_SECONDS = 86400


def cutoff_for(retention_days: int, now: float) -> int:
    """Samples with a timestamp strictly before this are expired."""
    return int(now) - retention_days * DAY_SECONDS


async def purge(writer: Writer, telemetry: Telemetry, retention_days: int, now: float) -> int:
    """Run one purge through the writer and record its outcome; returns the samples deleted."""
    started = time.monotonic()
    deleted = await writer.request_purge(cutoff_for(retention_days, now))
    telemetry.purged_samples += deleted
    telemetry.last_purge = time.time()
    log.info("purge: deleted %d samples older than %d days in %.2f s",
             deleted, retention_days, time.monotonic() - started)
    return deleted


def due_slot(spec: str, now: float) -> int:
    """The run a schedule fired for: its occurrence nearest `now`, in seconds since the
    epoch, so every server sharing the database claims the same one. A schedule fires a
    few ms either side of its time and servers' clocks differ (aiocron's timer also drifts
    from the wall clock over weeks); a minute number read off the clock as each server fired
    gave two servers firing 1 ms apart at 14:18:00 the slots of 14:17 and 14:18, and gave a
    sub-minute schedule one slot for all its runs in a minute."""
    moment = datetime.fromtimestamp(now, UTC)
    # (CronSim steps strictly past its start either way: from a second on, its own
    # occurrence is found stepping back from a second later)
    candidates = [next(CronSim(spec, moment + timedelta(seconds=1), reverse=True)),
                  next(CronSim(spec, moment))]
    return int(min((abs(each.timestamp() - now), each.timestamp()) for each in candidates)[1])


@asynccontextmanager
async def scheduled_purge(
    spec: str, writer: Writer, telemetry: Telemetry, retention_days: int
) -> AsyncIterator[aiocron.Cron]:
    """Run the purge on the cron schedule (UTC) while the context is open."""

    async def run_once() -> None:
        now = time.time()
        slot = due_slot(spec, now)
        try:
            if not await writer.call(lambda session: session.claim_purge(slot)):
                log.info("scheduled purge: another server sharing the database runs this one")
                return
            await purge(writer, telemetry, retention_days, now)
        except Closed:
            log.info("scheduled purge interrupted by shutdown; the next run finishes it")
        except Exception:
            # A failed purge must not kill the schedule; the next run tries again.
            log.exception("scheduled purge failed")

    job = aiocron.crontab(spec, func=run_once, start=False, tz=UTC)
    job.start()
    try:
        yield job
    finally:
        job.stop()


async def purge_store(store: Store, retention_days: int, now: float) -> int:
    """The `metrics-ingest purge` command: the same chunked purge, on a writer of its own.

    Safe beside a running server: each chunk is a short transaction, and the server's writer
    notices the outside commit and reloads what it keeps in memory.
    """
    writer = Writer(store, "full", Telemetry(), 1, 1)
    await writer.start()
    try:
        return await purge(writer, writer.telemetry, retention_days, now)
    finally:
        await writer.stop()
