"""`GET /metrics`: the newest sample of every fresh series, plus the service's own metrics, as
Prometheus text 0.0.4 or, when the scraper prefers it, OpenMetrics 1.0.0."""

from __future__ import annotations

from aiohttp import hdrs, web
from aiohttp.web import ContentCoding

from metrics_ingest import storage
from metrics_ingest.exposition import Format, negotiate, render_telemetry
from metrics_ingest.keys import (
    CLOCK,
    EXPORTED,
    QUEUE,
    READER,
    SETTINGS,
    TELEMETRY,
    WRITER,
)


async def stored_part(request: web.Request, fmt: Format, now: float) -> str:
    app = request.app
    exported = app[EXPORTED]
    writer = app[WRITER]
    generation = writer.generation  # read first: a commit during the reads forces a redo
    cached = exported.get(fmt, generation, now)
    if cached is not None:
        return cached
    settings = app[SETTINGS]
    since = int(now) - settings.export_window
    async with exported.lock:  # one scrape applies rows at a time, in the order read
        touched, everything = writer.take_touched()
        try:
            if everything or not exported.loaded:
                exported.reset(await storage.fresh_series(app[READER], since))
            elif touched:
                exported.update(await storage.series_by_id(app[READER], touched))
        except BaseException:
            writer.touched_everything = True  # what was taken was not applied: read it all
            raise
        text, oldest = exported.render(fmt, since, settings.export_timestamps)
    # A series with timestamp t is exported while int(now) - window <= t.
    exported.put(fmt, generation, oldest + settings.export_window + 1, text)
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
