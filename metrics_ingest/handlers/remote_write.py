"""`POST /api/v1/write`: the Prometheus remote_write 1.0 receiver (Prometheus, vmagent,
Grafana Alloy), through the same queue and commit as `/ingest`."""

from __future__ import annotations

from aiohttp import web

from metrics_ingest import remote_write
from metrics_ingest.errors import ApiError, BadRequest, PayloadTooLarge, UnsupportedMediaType
from metrics_ingest.handlers.intake import body_of, commit, count_rejection, now_of
from metrics_ingest.keys import SETTINGS, TELEMETRY

DEFAULT_SOURCE = "prometheus"


def check_headers(request: web.Request) -> None:
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding != "snappy":
        raise UnsupportedMediaType("remote_write bodies must be Content-Encoding: snappy")
    content_type = request.headers.get("Content-Type", "application/x-protobuf")
    if request.content_type != "application/x-protobuf" or ("proto=" in content_type and \
            "prometheus.WriteRequest" not in content_type):
        # Remote write 2.0 announces itself with proto=io.prometheus.write.v2.Request; the
        # spec asks receivers that only speak 1.0 to answer 415 so the sender falls back.
        raise UnsupportedMediaType(f"only remote_write 1.0 (prometheus.WriteRequest) is "
                                   f"accepted, not {content_type[:80]!r}")


async def receive(request: web.Request) -> web.Response:
    """204 when stored; 400 for a body that is not a WriteRequest (the sender drops it);
    503 when the sender should retry (overload, storage)."""
    now = now_of(request)
    try:
        check_headers(request)
        body = await body_of(request, raw=True)
        limit = request.app[SETTINGS].max_body_bytes
        try:
            decoded = remote_write.decode(remote_write.decompress(body, limit),
                                          request.query.get("source", DEFAULT_SOURCE), now)
        except remote_write.Undecodable as exc:
            raise BadRequest(f"not a remote_write WriteRequest: {exc}") from None
        except OverflowError as exc:
            raise PayloadTooLarge(str(exc)) from None
        dropped = request.app[TELEMETRY].dropped_samples
        for reason, count in decoded.dropped.items():
            dropped[("remote_write", reason)] += count
        if decoded.groups:
            await commit(request, decoded.groups, now)
    except ApiError as exc:
        count_rejection(request, exc, None)
        raise
    return web.Response(status=204)
