"""What every push format shares: the body read within its limits and deadline, the queue and
the wait for the commit, and the rejection counter."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from aiohttp import web

from metrics_ingest.body import read_body, read_raw
from metrics_ingest.errors import (
    ApiError,
    BadRequest,
    PayloadTooLarge,
    RequestTimeout,
    ServiceUnavailable,
)
from metrics_ingest.keys import CLOCK, LIFECYCLE, QUEUE, SETTINGS, TELEMETRY
from metrics_ingest.pushgateway import GroupPush
from metrics_ingest.validation import PushInvalid, SampleGroup
from metrics_ingest.writer import Closed, Overloaded, Push, StorageFailed

T = TypeVar("T")

REJECTION_REASONS = {
    400: "invalid", 408: "timeout", 413: "too_large", 415: "unsupported_type", 503: "overload"}


class StorageUnavailable(ServiceUnavailable):
    """The database refused the write (counted as `storage`, not `overload`)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retry_after=5)


async def body_of(request: web.Request, raw: bool = False) -> bytes:
    """The request body within METRICS_MAX_BODY_BYTES and METRICS_BODY_TIMEOUT: inflated
    (gzip/deflate), or as sent when `raw` (for formats that compress inside, like snappy)."""
    settings = request.app[SETTINGS]
    read = read_raw if raw else read_body
    if request.content.is_eof():
        # The whole body came with the headers (a small push): nothing to wait for, so no
        # timer to arm (asyncio.timeout cost ~4% of a small push's loop time).
        return await read(request, settings.max_body_bytes)
    try:
        # A client trickling its body holds only its own connection, and only this long.
        async with asyncio.timeout(settings.body_timeout):
            return await read(request, settings.max_body_bytes)
    except TimeoutError:
        raise RequestTimeout(
            f"the body did not arrive within {settings.body_timeout} s") from None


def parsed(parse: Callable[[], T]) -> T:
    """Run a format's parser, turning its PushInvalid into SPEC's 400 with the error list."""
    try:
        return parse()
    except PushInvalid as exc:
        raise invalid_push(exc) from None


def invalid_push(exc: PushInvalid) -> BadRequest:
    return BadRequest(f"invalid push: {exc}", errors=exc.errors)


async def commit(request: web.Request, groups: list[SampleGroup], now: float,
                 group: GroupPush | None = None) -> int:
    """Queue the samples (and, for the Pushgateway API, what the push does to its group) and
    wait for the transaction holding them to commit; returns the number of samples."""
    app = request.app
    if not app[LIFECYCLE].accepting:
        raise ServiceUnavailable("the service is shutting down; retry against its successor")
    queue = app[QUEUE]
    count = sum(len(group.names) for group in groups)
    if count > queue.max_samples:
        raise PayloadTooLarge(
            f"the push holds {count} samples; at most {queue.max_samples} fit in one push")
    push = Push(groups, count, now, queue.loop.create_future(), group)
    try:
        queue.put(push)
    except Overloaded as exc:
        raise ServiceUnavailable(f"overloaded: {exc}; retry shortly") from None
    except Closed as exc:
        raise ServiceUnavailable(str(exc)) from None
    try:
        await push.done
    except (StorageFailed, Closed) as exc:
        raise StorageUnavailable(str(exc)) from None
    last_push = app[TELEMETRY].last_push
    for sample_group in groups:
        last_push[sample_group.source] = now
    return count


def count_rejection(request: web.Request, exc: ApiError, source: str | None) -> None:
    reason = ("storage" if isinstance(exc, StorageUnavailable)
              else REJECTION_REASONS.get(exc.status, "invalid"))
    request.app[TELEMETRY].count_rejected(reason, source)


def now_of(request: web.Request) -> float:
    return request.app[CLOCK]()
