"""`GET /metrics`: the newest sample of every exported series, plus the service's own metrics,
as Prometheus text 0.0.4 or, when the scraper prefers it, OpenMetrics 1.0.0 (unless that would
lose a pushed counter's type and the scraper takes text too). `?only=stored` leaves out the
service's own metrics, `?only=self` the stored series: with several replicas, Prometheus
scrapes the stored series once and every replica's own metrics (README, "Replicas")."""

from __future__ import annotations

import asyncio
import zlib

from aiohttp import hdrs, web

from metrics_ingest.formats.exposition import TEXT, accepts_text, negotiate, render_telemetry
from metrics_ingest.http.errors import BadRequest
from metrics_ingest.keys import (
    CLOCK,
    CORS_HEADERS,
    EXPORT,
    READER,
    SERIES_OUTAGE,
    SERVICE_TELEMETRY,
    STORE,
)
from metrics_ingest.model import shorten
from metrics_ingest.store import StorageError

# Bodies up to this size are sent in one piece; larger ones are written as they are handed
# over, in writes of about this size, so a million series are never joined into one copy.
ONLY = frozenset({"", "stored", "self"})
WHOLE_BODY_BYTES = 1 << 20
WRITE_BYTES = 1 << 18


def gzipped(pieces: list[bytes]) -> bytes:
    """gzip of the pieces in order (zlib releases the GIL while it compresses)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return b"".join([*map(compressor.compress, pieces), compressor.flush()])


def coalesced(pieces: list[bytes]) -> list[bytes]:
    """Small pieces joined up to WRITE_BYTES, so the transport gets few, large writes."""
    out: list[bytes] = []
    pending: list[bytes] = []
    size = 0
    for piece in pieces:
        pending.append(piece)
        size += len(piece)
        if size >= WRITE_BYTES:
            out.append(b"".join(pending))
            pending, size = [], 0
    if pending:
        out.append(b"".join(pending))
    return out


async def series_counts(app: web.Application) -> dict[str, int]:
    """The series per source. While the database cannot be read (the reader has already
    tried a new connection): none, and a warning once an outage. The service's own metrics
    matter most then, so the scrape still answers; `metrics_ingest_series` goes stale in
    Prometheus (a gap, never a made-up count)."""
    outage = app[SERIES_OUTAGE]
    try:
        counts = await app[READER].series_counts()
    except StorageError as exc:
        outage.failed("%s", exc)
        return {}
    outage.working()
    return counts


async def metrics(request: web.Request) -> web.StreamResponse:
    app = request.app
    only = request.query.get("only", "")
    if only not in ONLY:
        raise BadRequest(f"only must be stored or self, got {shorten(only, 32)!r}")
    accept = request.headers.get(hdrs.ACCEPT, "")
    fmt = negotiate(accept)
    fallback = TEXT if fmt.openmetrics and accepts_text(accept) else None
    pieces: list[bytes] = []
    if only != "self":
        pieces, fmt = await app[EXPORT].pieces(fmt, app[CLOCK](), fallback)
    own: list[str] = []
    if only != "stored":
        telemetry, queued = app[SERVICE_TELEMETRY].read()
        own = render_telemetry(telemetry, queued, app[STORE].size_bytes(), fmt,
                               await series_counts(app))
    pieces.append(("".join(line + "\n" for line in own) + fmt.trailer).encode())
    headers = {"Content-Type": fmt.content_type}
    size = sum(map(len, pieces))
    if "gzip" in request.headers.get(hdrs.ACCEPT_ENCODING, "").lower():
        headers["Content-Encoding"] = "gzip"
        headers["Vary"] = "Accept-Encoding"
        body = gzipped(pieces) if size <= WHOLE_BODY_BYTES else await asyncio.to_thread(
            gzipped, pieces)
        return web.Response(body=body, headers=headers)
    if size <= WHOLE_BODY_BYTES:
        return web.Response(body=b"".join(pieces), headers=headers)
    # Headers go out with prepare(): the endpoint wrapper's CORS header is set here already.
    cors: dict[str, str] = app[CORS_HEADERS]
    headers.update(cors)
    response = web.StreamResponse(headers=headers)
    response.content_length = size
    await response.prepare(request)
    for chunk in coalesced(pieces):
        await response.write(chunk)
    await response.write_eof()
    return response
