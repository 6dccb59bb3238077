"""`POST /write` (InfluxDB v1) and `POST /api/v2/write` (v2): line protocol from Telegraf,
influxdb-client and friends, through the same validation, queue and commit as `/ingest`."""

from __future__ import annotations

from aiohttp import web

from metrics_ingest import influx
from metrics_ingest.auth import influx_credentials
from metrics_ingest.errors import ApiError, BadRequest, UnsupportedMediaType
from metrics_ingest.handlers.intake import body_of, commit, count_rejection, now_of, parsed
from metrics_ingest.validation import SOURCE_RE

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


async def write(request: web.Request, database_param: str, default_precision: str,
                precisions: tuple[str, ...]) -> web.Response:
    now = now_of(request)
    source: str | None = None
    try:
        check_type(request)
        precision = request.query.get("precision", default_precision)
        if precision not in precisions:
            raise BadRequest(f"precision must be one of {', '.join(precisions)}")
        source = default_source(request, database_param)
        body = await body_of(request)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("the body is not UTF-8 text") from None
        groups = parsed(lambda: influx.parse_body(text, precision, source, now))
        await commit(request, groups, now)
    except ApiError as exc:
        count_rejection(request, exc, source)
        raise
    return web.Response(status=204)  # what InfluxDB answers, and what its clients expect


async def write_v1(request: web.Request) -> web.Response:
    return await write(request, "db", "n", ("n", "ns", "u", "ms", "s", "m", "h"))


async def write_v2(request: web.Request) -> web.Response:
    return await write(request, "bucket", "ns", ("ns", "us", "ms", "s"))
