"""`GET /healthz` (the process serves) and `GET /readyz` (pushes can be committed now)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from metrics_ingest.http.errors import error_response, json_response
from metrics_ingest.inbox import StorageFailed
from metrics_ingest.keys import LIFECYCLE, WRITER

# Above this share of METRICS_QUEUE_MAX_SAMPLES, readiness reports overload so a load balancer
# sends pushes elsewhere before they start getting 503.
OVERLOAD_SHARE = 0.9
PROBE_SECONDS = 3.0


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """503 while shutting down, overloaded, without a writer, or while the database refuses
    writes. After a failed write it probes the database itself, so readiness comes back as
    soon as the fault is cleared, without waiting for a push to succeed."""
    app = request.app
    writer = app[WRITER]
    queued = writer.queued_samples
    limit = writer.inbox.max_samples
    if not app[LIFECYCLE].accepting:
        return error_response(503, "shutting down")
    if not writer.alive:
        return error_response(503, "the writer task has stopped")
    if queued >= OVERLOAD_SHARE * limit:
        return error_response(
            503, f"overloaded: {queued} of {limit} queued samples")
    if not writer.healthy:
        try:
            await asyncio.wait_for(writer.probe(), PROBE_SECONDS)
        except (StorageFailed, TimeoutError) as exc:
            return error_response(503, f"the database refuses writes: {exc or 'probe timed out'}")
    return json_response({"status": "ready", "queued_samples": queued})
