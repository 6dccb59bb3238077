"""`POST /ingest`: the Worker's JSON push, answered only after its samples are committed."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from metrics_ingest.formats.json_push import parse_push, push_source
from metrics_ingest.http.errors import BadRequest
from metrics_ingest.http.intake import Attempt, accept, body_of, invalid_push
from metrics_ingest.http.params import boolean_param
from metrics_ingest.model import Parsed, PushInvalid

JSON_HEADERS = {"Content-Type": "application/json"}


def decode_json(body: bytes) -> Any:
    """The body as JSON whatever its Content-Type says, as the Worker read it (.NET's
    StringContent sends text/plain, curl -d form-urlencoded)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None


async def read_push(request: web.Request, attempt: Attempt) -> Parsed:
    query = request.query
    strict = bool(query) and boolean_param(query, "strict")  # other parameters are ignored
    payload = decode_json(await body_of(request))
    attempt.payload = payload
    attempt.source_of = push_source
    try:
        return parse_push(payload, attempt.now, strict)
    except PushInvalid as exc:
        raise invalid_push(exc) from None


async def ingest(request: web.Request) -> web.Response:
    parsed, inserted = await accept(request, read_push)
    if parsed.skipped is None:
        return web.Response(body=b'{"status":"ok","inserted":%d}\n' % inserted,
                            headers=JSON_HEADERS)
    body = {"status": "ok", "inserted": inserted,
            "skipped": [{"path": skip.path, "error": skip.error} for skip in parsed.skipped]}
    return web.Response(body=orjson.dumps(body) + b"\n", headers=JSON_HEADERS)
