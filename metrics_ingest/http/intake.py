"""One intake for every push format: the body read within its limits and deadline, the
format's parser, the writer's inbox and the wait for the commit, and the rejection counter."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from metrics_ingest.http.body import read_body, read_raw
from metrics_ingest.http.errors import (
    ApiError,
    BadRequest,
    PayloadTooLarge,
    RequestTimeout,
    ServiceUnavailable,
)
from metrics_ingest.inbox import Closed, Overloaded, StorageFailed
from metrics_ingest.keys import CLOCK, LIFECYCLE, SETTINGS, TELEMETRY, WRITER
from metrics_ingest.model import Parsed, Push, PushInvalid, PushRefused

REJECTION_REASONS = {
    400: "invalid", 408: "timeout", 413: "too_large", 415: "unsupported_type", 503: "overload"}


class Attempt:
    """One push on its way in: its source once known, for the rejection counter. A format
    that knows it only from its payload leaves the payload and how to read it, so the work
    is done only for a push that is refused."""

    __slots__ = ("now", "payload", "source", "source_of")

    def __init__(self, now: float) -> None:
        self.now = now
        self.source: str | None = None
        self.payload: Any = None
        self.source_of: Callable[[Any], str | None] | None = None

    def known_source(self) -> str | None:
        if self.source is None and self.source_of is not None:
            return self.source_of(self.payload)
        return self.source


PushReader = Callable[[web.Request, Attempt], Awaitable[Parsed]]


class StorageUnavailable(ServiceUnavailable):
    """The database refused the write (counted as `storage`, not `overload`)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retry_after=5)


async def accept(request: web.Request, read: PushReader) -> tuple[Parsed, int]:
    """Read and parse a push with the format's `read`, queue it and wait for the commit that
    holds it; returns it with the number of samples stored. Every refusal on the way is
    counted once (with the source when known) and re-raised as the error answer."""
    app = request.app
    attempt = Attempt(app[CLOCK]())
    try:
        parsed = await read(request, attempt)
        inserted = await commit(app, parsed, attempt.now)
    except ApiError as exc:
        reason = ("storage" if isinstance(exc, StorageUnavailable)
                  else REJECTION_REASONS.get(exc.status, "invalid"))
        app[TELEMETRY].count_rejected(reason, attempt.known_source())
        raise
    if parsed.skip_counts:
        skipped = app[TELEMETRY].skipped_samples
        for key, count in parsed.skip_counts.items():
            skipped[key] += count
    return parsed, inserted


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


def text_of(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the body is not UTF-8 text") from None


def invalid_push(exc: PushInvalid) -> BadRequest:
    return BadRequest(f"invalid push: {exc}", errors=exc.errors)


async def commit(app: web.Application, parsed: Parsed, now: float) -> int:
    """Queue the samples (and what a Pushgateway-API push does to its group) and wait for the
    transaction holding them to commit; returns the number of samples."""
    groups = parsed.groups
    if not groups and parsed.group is None and not parsed.families:
        return 0  # nothing to store (remote_write's metadata-only requests are something)
    if not app[LIFECYCLE].accepting:
        raise ServiceUnavailable("the service is shutting down; retry against its successor")
    writer = app[WRITER]
    count = sum(len(group.names) for group in groups)
    if count > writer.inbox.max_samples:
        raise PayloadTooLarge(
            f"the push holds {count} samples; at most {writer.inbox.max_samples} fit in one "
            "push")
    push = Push(groups, count, now, writer.loop.create_future(), parsed.group, parsed.families,
                parsed.typing)
    try:
        writer.submit(push)
    except Overloaded as exc:
        raise ServiceUnavailable(f"overloaded: {exc}; retry shortly") from None
    except Closed as exc:
        raise ServiceUnavailable(str(exc)) from None
    try:
        await push.done
    except (StorageFailed, Closed) as exc:
        raise StorageUnavailable(str(exc)) from None
    except PushRefused as exc:
        raise BadRequest(f"pushed metrics are invalid or inconsistent with existing metrics: "
                         f"{exc}") from None
    last_push = app[TELEMETRY].last_push
    for sample_group in groups:
        last_push[sample_group.source] = now
    return count
