"""`POST /api/v1/write`: the Prometheus remote_write 1.0 receiver (Prometheus, vmagent,
Grafana Alloy), through the same intake as `/ingest`."""

from __future__ import annotations

from aiohttp import web

from metrics_ingest.formats import remote_write
from metrics_ingest.http.errors import UnsupportedMediaType
from metrics_ingest.http.intake import Attempt, accept
from metrics_ingest.keys import SETTINGS


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


class RemoteWrite:
    """remote_write 1.0: snappy inside, so the body is not inflated by the intake."""

    raw = True
    parse = staticmethod(remote_write.parse_write_request)

    @staticmethod
    def check(request: web.Request, attempt: Attempt) -> remote_write.WriteParams:
        check_headers(request)
        settings = request.app[SETTINGS]
        return remote_write.WriteParams(request.query.get("source"), settings.max_body_bytes,
                                        settings.queue_max_samples)


REMOTE_WRITE = RemoteWrite()


async def receive(request: web.Request) -> web.Response:
    """204 when stored; 400 for a body that is not a WriteRequest (the sender drops it);
    503 when the sender should retry (overload, storage)."""
    await accept(request, REMOTE_WRITE)
    return web.Response(status=204)
