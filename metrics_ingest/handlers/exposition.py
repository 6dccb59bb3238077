"""`GET /metrics`: the newest sample of every fresh series, plus the service's own metrics."""

from __future__ import annotations

import math

from aiohttp import hdrs, web
from aiohttp.web import ContentCoding

from metrics_ingest import storage
from metrics_ingest.exposition import CONTENT_TYPE, render_stored, render_telemetry
from metrics_ingest.keys import CLOCK, QUEUE, READER, SETTINGS, STORED_BODY, TELEMETRY, WRITER


async def stored_part(request: web.Request, now: float) -> str:
    app = request.app
    cache = app[STORED_BODY]
    generation = app[WRITER].generation  # read first: a commit during the query forces a redo
    if cache.generation == generation and now < cache.expires:
        return cache.text
    settings = app[SETTINGS]
    since = int(now) - settings.export_window
    rows = await storage.fresh_series(app[READER], since)
    if len(cache.label_blocks) > 2 * len(rows) + 1000:
        cache.label_blocks.clear()  # label sets that no longer export
    lines = render_stored(rows, settings.export_timestamps, cache.label_blocks)
    oldest = min((row[4] for row in rows), default=math.inf)
    # A series with timestamp t is exported while int(now) - window <= t.
    cache.expires = oldest + settings.export_window + 1
    cache.generation = generation
    cache.text = "\n".join(lines) + "\n" if lines else ""
    return cache.text


async def metrics(request: web.Request) -> web.Response:
    app = request.app
    stored = await stored_part(request, app[CLOCK]())
    own = render_telemetry(
        app[TELEMETRY], app[QUEUE].samples, storage.database_size(app[SETTINGS].db_path))
    body = (stored + "\n".join(own) + "\n").encode()
    response = web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
    if "gzip" in request.headers.get(hdrs.ACCEPT_ENCODING, "").lower():
        response.enable_compression(ContentCoding.gzip)
    return response
