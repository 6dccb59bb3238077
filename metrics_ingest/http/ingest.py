"""`POST /ingest`: the Worker's JSON push, answered only after its samples are committed."""

from __future__ import annotations

import orjson
from aiohttp import web

from metrics_ingest.formats.json_push import JsonParams, parse_json_body
from metrics_ingest.http.intake import Attempt, accept
from metrics_ingest.http.params import boolean_param
from metrics_ingest.keys import SETTINGS

JSON_HEADERS = {"Content-Type": "application/json"}


class JsonPush:
    """The Worker's JSON: read whatever the Content-Type says, as the Worker read it (.NET's
    StringContent sends text/plain, curl -d form-urlencoded)."""

    raw = False
    parse = staticmethod(parse_json_body)

    @staticmethod
    def check(request: web.Request, attempt: Attempt) -> JsonParams:
        query = request.query
        strict = bool(query) and boolean_param(query, "strict")  # other parameters: ignored
        return JsonParams(strict, request.app[SETTINGS].queue_max_samples)


JSON_PUSH = JsonPush()


async def ingest(request: web.Request) -> web.Response:
    parsed, inserted = await accept(request, JSON_PUSH)
    if parsed.skipped is None:
        return web.Response(body=b'{"status":"ok","inserted":%d}\n' % inserted,
                            headers=JSON_HEADERS)
    body = {"status": "ok", "inserted": inserted,
            "skipped": [{"path": skip.path, "error": skip.error} for skip in parsed.skipped]}
    return web.Response(body=orjson.dumps(body) + b"\n", headers=JSON_HEADERS)
