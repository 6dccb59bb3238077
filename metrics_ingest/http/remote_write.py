"""`POST /api/v1/write`: the Prometheus remote_write 1.0 receiver (Prometheus, vmagent,
Grafana Alloy), through the same intake as `/ingest`."""

from __future__ import annotations

from aiohttp import web

from metrics_ingest.formats import remote_write
from metrics_ingest.http.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from metrics_ingest.http.intake import Attempt, accept
from metrics_ingest.keys import SETTINGS
from metrics_ingest.model import Parsed


def check_headers(request: web.Request) -> None:
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding != "snappy":
        raise UnsupportedMediaType("remote_write bodies must be Content-Encoding: snappy")
    content_type = request.headers.get("Content-Type", "application/x-protobuf")
    if request.content_type != "application/x-protobuf" or ("proto=" in content_type and
                                                            "prometheus.WriteRequest"
                                                            not in content_type):
        # Remote write 2.0 announces itself with proto=io.prometheus.write.v2.Request; the
        # spec asks receivers that only speak 1.0 to answer 415 so the sender falls back.
        raise UnsupportedMediaType(f"only remote_write 1.0 (prometheus.WriteRequest) is "
                                   f"accepted, not {content_type[:80]!r}")


def check(request: web.Request, attempt: Attempt) -> None:
    check_headers(request)


def parse(request: web.Request, body: bytes, attempt: Attempt) -> Parsed:
    limit = request.app[SETTINGS].max_body_bytes
    try:
        decoded = remote_write.decode(remote_write.decompress(body, limit),
                                      request.query.get("source"), attempt.now)
    except remote_write.Undecodable as exc:
        raise BadRequest(f"not a remote_write WriteRequest: {exc}") from None
    except OverflowError as exc:
        raise PayloadTooLarge(str(exc)) from None
    return Parsed(decoded.groups, skip_counts=decoded.skipped or None,
                  families=decoded.families or None, typing="soft")


async def receive(request: web.Request) -> web.Response:
    """204 when stored; 400 for a body that is not a WriteRequest (the sender drops it);
    503 when the sender should retry (overload, storage)."""
    await accept(request, parse, check, raw=True)
    return web.Response(status=204)
