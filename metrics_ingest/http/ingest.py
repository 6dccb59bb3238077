"""`POST /ingest`: the Worker's JSON push, answered only after its samples are committed."""

from __future__ import annotations

import orjson
from aiohttp import web

from metrics_ingest.formats.json_push import parse_push, push_source
from metrics_ingest.http.errors import BadRequest
from metrics_ingest.http.intake import Attempt, accept
from metrics_ingest.http.params import boolean_param
from metrics_ingest.model import Parsed

JSON_HEADERS = {"Content-Type": "application/json"}


def parse(request: web.Request, body: bytes, attempt: Attempt) -> Parsed:
    """The body as JSON whatever its Content-Type says, as the Worker read it (.NET's
    StringContent sends text/plain, curl -d form-urlencoded)."""
    query = request.query
    strict = bool(query) and boolean_param(query, "strict")  # other parameters are ignored
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None
    attempt.payload = payload
    attempt.source_of = push_source
    return parse_push(payload, attempt.now, strict)


async def ingest(request: web.Request) -> web.Response:
    parsed, inserted = await accept(request, parse)
    if parsed.skipped is None:
        return web.Response(body=b'{"status":"ok","inserted":%d}\n' % inserted,
                            headers=JSON_HEADERS)
    body = {"status": "ok", "inserted": inserted,
            "skipped": [{"path": skip.path, "error": skip.error} for skip in parsed.skipped]}
    return web.Response(body=orjson.dumps(body) + b"\n", headers=JSON_HEADERS)
