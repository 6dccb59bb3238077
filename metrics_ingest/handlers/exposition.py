"""`GET /metrics`: the newest sample of every fresh series, plus the service's own metrics, as
Prometheus text 0.0.4 or, when the scraper prefers it, OpenMetrics 1.0.0."""

from __future__ import annotations

import math

from aiohttp import hdrs, web
from aiohttp.web import ContentCoding

from metrics_ingest import storage
from metrics_ingest.exposition import Format, negotiate, render_stored, render_telemetry
from metrics_ingest.keys import CLOCK, QUEUE, READER, SETTINGS, STORED_BODY, TELEMETRY, WRITER


async def stored_part(request: web.Request, fmt: Format, now: float) -> str:
    app = request.app
    cache = app[STORED_BODY]
    generation = app[WRITER].generation  # read first: a commit during the query forces a redo
    cached = cache.get(fmt, generation, now)
    if cached is not None:
        return cached
    settings = app[SETTINGS]
    since = int(now) - settings.export_window
    rows = await storage.fresh_series(app[READER], since)
    if len(cache.label_blocks) > 2 * len(rows) + 1000:
        cache.label_blocks.clear()  # label sets that no longer export
    lines = render_stored(rows, settings.export_timestamps, cache.label_blocks, fmt)
    # Pinned series (push-group members) never age out; the others do.
    oldest = min((row[4] for row in rows if not row[5]), default=math.inf)
    text = "\n".join(lines) + "\n" if lines else ""
    # A series with timestamp t is exported while int(now) - window <= t.
    cache.put(fmt, generation, oldest + settings.export_window + 1, text)
    return text


async def metrics(request: web.Request) -> web.Response:
    app = request.app
    fmt = negotiate(request.headers.get(hdrs.ACCEPT, ""))
    stored = await stored_part(request, fmt, app[CLOCK]())
    own = render_telemetry(app[TELEMETRY], app[QUEUE].samples,
                           storage.database_size(app[SETTINGS].db_path), fmt)
    body = (stored + "\n".join(own) + "\n" + fmt.trailer).encode()
    response = web.Response(body=body, headers={"Content-Type": fmt.content_type})
    if "gzip" in request.headers.get(hdrs.ACCEPT_ENCODING, "").lower():
        response.enable_compression(ContentCoding.gzip)
    return response
