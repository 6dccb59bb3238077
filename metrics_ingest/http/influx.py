"""`POST /write` (InfluxDB v1) and `POST /api/v2/write` (v2): line protocol from Telegraf,
influxdb-client and friends, through the same intake as `/ingest`."""

from __future__ import annotations

from aiohttp import web

from metrics_ingest.auth import influx_credentials
from metrics_ingest.formats import influx
from metrics_ingest.http.errors import BadRequest, UnsupportedMediaType
from metrics_ingest.http.intake import Attempt, PushReader, accept, body_of, invalid_push, text_of
from metrics_ingest.model import SOURCE_RE, Parsed, PushInvalid

LINE_PROTOCOL_TYPES = ("text/plain", "application/octet-stream",
                       "application/x-www-form-urlencoded")


def credentials(request: web.Request) -> str | None:
    return influx_credentials(request.headers, request.query)


def check_type(request: web.Request) -> None:
    if "Content-Type" in request.headers and request.content_type not in LINE_PROTOCOL_TYPES:
        raise UnsupportedMediaType(f"Content-Type {request.content_type[:64]!r} is not line "
                                   "protocol; send text/plain")


def default_source(request: web.Request, database_param: str) -> str | None:
    """`?source=`, else the v1 `db` / v2 `bucket`; a line's `source` tag wins over both."""
    source = request.query.get("source") or request.query.get(database_param)
    if source is not None and not SOURCE_RE.fullmatch(source):
        raise BadRequest(f"source (from ?source= or ?{database_param}=) must be 1-64 "
                         "characters of A-Z a-z 0-9 _ . -")
    return source


def reader(database_param: str, default_precision: str,
           precisions: tuple[str, ...]) -> PushReader:
    async def read(request: web.Request, attempt: Attempt) -> Parsed:
        check_type(request)
        precision = request.query.get("precision", default_precision)
        if precision not in precisions:
            raise BadRequest(f"precision must be one of {', '.join(precisions)}")
        source = attempt.source = default_source(request, database_param)
        text = text_of(await body_of(request))
        try:
            return Parsed(influx.parse_body(text, precision, source, attempt.now))
        except PushInvalid as exc:
            raise invalid_push(exc) from None

    return read


READ_V1 = reader("db", "n", ("n", "ns", "u", "ms", "s", "m", "h"))
READ_V2 = reader("bucket", "ns", ("ns", "us", "ms", "s"))


async def write_v1(request: web.Request) -> web.Response:
    await accept(request, READ_V1)
    return web.Response(status=204)  # what InfluxDB answers, and what its clients expect


async def write_v2(request: web.Request) -> web.Response:
    await accept(request, READ_V2)
    return web.Response(status=204)
