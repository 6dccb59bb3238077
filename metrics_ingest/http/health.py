"""`GET /healthz` (the process serves) and `GET /readyz` (pushes can be committed now)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from aiohttp import web

from metrics_ingest.http.endpoint import bearer_token
from metrics_ingest.http.errors import error_response, json_response
from metrics_ingest.inbox import StorageFailed
from metrics_ingest.keys import AUTH, LIFECYCLE, READINESS, WRITER

# Above this share of METRICS_QUEUE_MAX_SAMPLES, readiness reports overload so a load balancer
# sends pushes elsewhere before they start getting 503.
OVERLOAD_SHARE = 0.9
PROBE_SECONDS = 3.0  # a probe write that takes longer is a failure
PROBE_INTERVAL = 2.0  # at most one probe this often, however many ask


@dataclass
class Readiness:
    """The last probe of an unhealthy writer, shared by every /readyz caller: an open
    endpoint must not let anyone make the database write on demand."""

    probed_at: float = -1e9
    error: str | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def probe(self, request: web.Request) -> str | None:
        """The reason the database refuses writes, or None once a probe succeeded."""
        writer = request.app[WRITER]
        async with self.lock:
            if time.monotonic() - self.probed_at >= PROBE_INTERVAL:
                self.probed_at = time.monotonic()
                try:
                    await asyncio.wait_for(writer.probe(), PROBE_SECONDS)
                    self.error = None
                except (StorageFailed, TimeoutError) as exc:
                    self.error = str(exc) or "the probe write timed out"
            return None if writer.health.healthy else self.error or writer.health.last_error


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


def may_see_details(request: web.Request) -> bool:
    """The database's own words (paths, SQLite's errors) only for a token holder."""
    return request.app[AUTH].identify(bearer_token(request)) is not None


async def readyz(request: web.Request) -> web.Response:
    """503 while shutting down, overloaded, without a writer, when the database file was
    replaced underneath, or while the database refuses writes. After a failed write it probes
    the database (at most every PROBE_INTERVAL), so readiness comes back as soon as the fault
    is cleared, without waiting for a push to succeed."""
    app = request.app
    writer = app[WRITER]
    queued = writer.queued_samples
    limit = writer.inbox.max_samples
    if not app[LIFECYCLE].accepting:
        return error_response(503, "shutting down")
    if not writer.alive:
        return error_response(503, "the writer task has stopped")
    if writer.health.lost is not None:
        detail = f": {writer.health.lost}" if may_see_details(request) else ""
        return error_response(503, "the database file was deleted or replaced underneath the "
                                   f"server; restart it{detail}")
    if queued >= OVERLOAD_SHARE * limit:
        return error_response(
            503, f"overloaded: {queued} of {limit} queued samples")
    if not writer.health.healthy:
        error = await app[READINESS].probe(request)
        if error is not None:
            detail = f": {error}" if may_see_details(request) else ""
            return error_response(503, f"the database refuses writes{detail}")
    return json_response({"status": "ready", "queued_samples": queued})
