"""`GET /metrics`: the newest sample of every fresh series, plus the service's own metrics."""

from __future__ import annotations

from aiohttp import hdrs, web
from aiohttp.web import ContentCoding

from metrics_ingest import storage
from metrics_ingest.exposition import (
    CONTENT_TYPE,
    render_exposition,
    render_stored,
    render_telemetry,
)
from metrics_ingest.keys import CLOCK, QUEUE, READER, SETTINGS, TELEMETRY


async def metrics(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    since = int(request.app[CLOCK]()) - settings.export_window
    rows = await storage.fresh_series(request.app[READER], since)
    lines = render_stored(rows, settings.export_timestamps)
    lines += render_telemetry(
        request.app[TELEMETRY],
        request.app[QUEUE].samples,
        storage.database_size(settings.db_path),
    )
    response = web.Response(body=render_exposition(lines), headers={"Content-Type": CONTENT_TYPE})
    if "gzip" in request.headers.get(hdrs.ACCEPT_ENCODING, "").lower():
        response.enable_compression(ContentCoding.gzip)
    return response
