"""`POST /ingest`: the Worker's JSON push, answered only after its samples are committed."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from metrics_ingest.errors import ApiError, BadRequest, UnsupportedMediaType
from metrics_ingest.handlers.intake import (
    body_of,
    commit,
    count_rejection,
    invalid_push,
    now_of,
)
from metrics_ingest.validation import PushInvalid, parse_push, push_source

JSON_TYPES = ("application/json", "application/x-www-form-urlencoded")
JSON_HEADERS = {"Content-Type": "application/json"}


def check_json_type(request: web.Request) -> None:
    """JSON when Content-Type is application/json (any parameters), absent, or what `curl -d`
    sends; anything else is 415."""
    declared = request.headers.get("Content-Type")
    if declared is not None and declared != "application/json" and (
            request.content_type not in JSON_TYPES):
        raise UnsupportedMediaType(
            f"Content-Type {request.content_type[:64]!r} is not supported; send application/json")


def decode_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None


async def ingest(request: web.Request) -> web.Response:
    now = now_of(request)
    payload: Any = None
    try:
        check_json_type(request)
        payload = decode_json(await body_of(request))
        try:
            groups = parse_push(payload, now)
        except PushInvalid as exc:
            raise invalid_push(exc) from None
        inserted = await commit(request, groups, now)
    except ApiError as exc:
        count_rejection(request, exc, push_source(payload))
        raise
    return web.Response(body=b'{"status":"ok","inserted":%d}' % inserted, headers=JSON_HEADERS)
