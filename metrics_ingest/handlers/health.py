"""`GET /healthz` (the process serves) and `GET /readyz` (pushes can be committed now)."""

from __future__ import annotations

from aiohttp import web

from metrics_ingest.errors import error_response, json_response
from metrics_ingest.keys import LIFECYCLE, WRITER


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    writer = request.app[WRITER]
    if not request.app[LIFECYCLE].accepting:
        return error_response(503, "shutting down")
    if not writer.alive:
        return error_response(503, "the writer task has stopped")
    if not writer.healthy:
        return error_response(503, f"the last write failed: {writer.last_error}")
    return json_response({"status": "ready"})
