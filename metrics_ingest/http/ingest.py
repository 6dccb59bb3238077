"""`POST /ingest`: the Worker's JSON push, answered only after its samples are committed."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from metrics_ingest.formats.json_push import parse_push, push_source
from metrics_ingest.http.errors import BadRequest, UnsupportedMediaType
from metrics_ingest.http.intake import Attempt, accept, body_of, invalid_push
from metrics_ingest.model import Parsed, PushInvalid

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


async def read_push(request: web.Request, attempt: Attempt) -> Parsed:
    check_json_type(request)
    payload = decode_json(await body_of(request))
    attempt.payload = payload
    attempt.source_of = push_source
    try:
        return Parsed(parse_push(payload, attempt.now))
    except PushInvalid as exc:
        raise invalid_push(exc) from None


async def ingest(request: web.Request) -> web.Response:
    _, inserted = await accept(request, read_push)
    return web.Response(body=b'{"status":"ok","inserted":%d}' % inserted, headers=JSON_HEADERS)
