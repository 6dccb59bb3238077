"""`GET /metrics`: the newest sample of every exported series, plus the service's own metrics,
as Prometheus text 0.0.4 or, when the scraper prefers it, OpenMetrics 1.0.0 (unless that would
lose a pushed counter's type and the scraper takes text too)."""

from __future__ import annotations

from aiohttp import hdrs, web
from aiohttp.web import ContentCoding

from metrics_ingest.formats.exposition import TEXT, accepts_text, negotiate, render_telemetry
from metrics_ingest.keys import CLOCK, EXPORT, STORE, TELEMETRY, WRITER


async def metrics(request: web.Request) -> web.Response:
    app = request.app
    accept = request.headers.get(hdrs.ACCEPT, "")
    fmt = negotiate(accept)
    fallback = TEXT if fmt.openmetrics and accepts_text(accept) else None
    stored, fmt = await app[EXPORT].text(fmt, app[CLOCK](), fallback)
    own = render_telemetry(app[TELEMETRY], app[WRITER].queued_samples,
                           app[STORE].size_bytes(), fmt)
    body = (stored + "\n".join(own) + "\n" + fmt.trailer).encode()
    response = web.Response(body=body, headers={"Content-Type": fmt.content_type})
    if "gzip" in request.headers.get(hdrs.ACCEPT_ENCODING, "").lower():
        response.enable_compression(ContentCoding.gzip)
    return response
