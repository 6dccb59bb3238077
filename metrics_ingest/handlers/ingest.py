"""`POST /ingest`: the Worker's JSON push, answered only after its samples are committed."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from metrics_ingest.body import read_body
from metrics_ingest.errors import (
    ApiError,
    BadRequest,
    PayloadTooLarge,
    RequestTimeout,
    ServiceUnavailable,
    UnsupportedMediaType,
)
from metrics_ingest.keys import CLOCK, LIFECYCLE, QUEUE, SETTINGS, TELEMETRY
from metrics_ingest.validation import PushInvalid, SampleGroup, parse_push, push_source
from metrics_ingest.writer import Closed, Overloaded, Push, StorageFailed

JSON_TYPES = ("application/json", "application/x-www-form-urlencoded")
JSON_HEADERS = {"Content-Type": "application/json"}

REJECTION_REASONS = {
    400: "invalid", 408: "timeout", 413: "too_large", 415: "unsupported_type", 503: "overload"}


def check_json_type(request: web.Request) -> None:
    """JSON when Content-Type is application/json (any parameters), absent, or what `curl -d`
    sends; anything else is 415."""
    if "Content-Type" in request.headers and request.content_type not in JSON_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type {request.content_type[:64]!r} is not supported; send application/json")


def decode_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None


async def commit(request: web.Request, groups: list[SampleGroup], now: float) -> int:
    """Queue the samples and wait for the transaction holding them to commit; returns their
    number."""
    if not request.app[LIFECYCLE].accepting:
        raise ServiceUnavailable("the service is shutting down; retry against its successor")
    queue = request.app[QUEUE]
    count = sum(len(group.names) for group in groups)
    if count > queue.max_samples:
        raise PayloadTooLarge(
            f"the push holds {count} samples; at most {queue.max_samples} fit in one push")
    push = Push(groups, count, now)
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
    last_push = request.app[TELEMETRY].last_push
    for group in groups:
        last_push[group.source] = now
    return count


class StorageUnavailable(ServiceUnavailable):
    """The database refused the write (counted as `storage`, not `overload`)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retry_after=5)


async def ingest(request: web.Request) -> web.Response:
    now = request.app[CLOCK]()
    payload: Any = None
    try:
        check_json_type(request)
        settings = request.app[SETTINGS]
        try:
            # A client trickling its body holds only its own connection, and only this long.
            async with asyncio.timeout(settings.body_timeout):
                body = await read_body(request, settings.max_body_bytes)
        except TimeoutError:
            raise RequestTimeout(
                f"the body did not arrive within {settings.body_timeout} s") from None
        payload = decode_json(body)
        try:
            groups = parse_push(payload, now)
        except PushInvalid as exc:
            raise BadRequest(f"invalid push: {exc}", errors=exc.errors) from None
        inserted = await commit(request, groups, now)
    except ApiError as exc:
        reason = "storage" if isinstance(exc, StorageUnavailable) else REJECTION_REASONS.get(
            exc.status, "invalid")
        request.app[TELEMETRY].count_rejected(reason, push_source(payload))
        raise
    return web.Response(body=b'{"status":"ok","inserted":%d}' % inserted, headers=JSON_HEADERS)
