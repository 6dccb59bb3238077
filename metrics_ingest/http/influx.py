"""The InfluxDB API as Telegraf and influxdb-client use it: `POST /write` (v1) and
`POST /api/v2/write` (v2) through the same intake as `/ingest`, plus `/ping`, `/health`
and the two `/query` statements a v1 client sends (`SHOW DATABASES`, `CREATE DATABASE`)."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from metrics_ingest import __version__
from metrics_ingest.auth import influx_credentials
from metrics_ingest.formats import influx
from metrics_ingest.http.errors import BadRequest, UnsupportedMediaType, json_response
from metrics_ingest.http.intake import Attempt, accept
from metrics_ingest.keys import CLOCK, LIFECYCLE, READER, SETTINGS, WRITER
from metrics_ingest.model import SOURCE_RE, shorten

LINE_PROTOCOL_TYPES = ("text/plain", "application/octet-stream",
                       "application/x-www-form-urlencoded")
# What clients see as the server's version: InfluxDB 1.8's API, answered by metrics-ingest.
VERSION_HEADERS = {"X-Influxdb-Version": "1.8.10", "X-Influxdb-Build": "OSS"}
INFLUX_CODES = {400: "invalid", 401: "unauthorized", 403: "forbidden", 404: "not found",
                405: "method not allowed", 408: "request timeout", 413: "request too large",
                415: "unsupported media type", 429: "too many requests",
                500: "internal error", 503: "unavailable"}
SHOW_DATABASES_RE = re.compile(r"\s*SHOW\s+DATABASES\s*", re.IGNORECASE)
CREATE_DATABASE_RE = re.compile(r'\s*CREATE\s+DATABASE\s+("(?:[^"\\]|\\.)+"|\w+)(\s+WITH\s.*)?',
                                re.IGNORECASE | re.DOTALL)


def credentials(request: web.Request) -> str | None:
    return influx_credentials(request.headers, request.query)


def error_fields(status: int, message: str) -> dict[str, Any]:
    """InfluxDB 2 clients (Telegraf's influxdb_v2 output) log `code` and `message`."""
    return {"code": INFLUX_CODES.get(status, "invalid"), "message": message}


def check_type(request: web.Request) -> None:
    if "Content-Type" in request.headers and request.content_type not in LINE_PROTOCOL_TYPES:
        raise UnsupportedMediaType(f"Content-Type {request.content_type[:64]!r} is not line "
                                   "protocol; send text/plain")


def source_of(request: web.Request, database_param: str) -> str:
    """`?source=`, else the v1 `db` / v2 `bucket`: the write's source, whatever the points'
    own `source` tags say (those stay, as the label `exported_source`)."""
    source = request.query.get("source") or request.query.get(database_param)
    if source is None:
        raise BadRequest(f"a write needs ?{database_param}= (or ?source=): it is the source "
                         "of every point")
    if not SOURCE_RE.fullmatch(source):
        raise BadRequest(f"source (from ?source= or ?{database_param}=) must be 1-64 "
                         f"characters of A-Z a-z 0-9 _ . -, got {shorten(source, 32)!r}")
    return source


class LineProtocolWrite:
    """The v1 (`db`, precisions n..h) or v2 (`bucket`, ns..s) flavour of a write."""

    raw = False
    parse = staticmethod(influx.parse_write)

    def __init__(self, database_param: str, default_precision: str,
                 precisions: tuple[str, ...]) -> None:
        self.database_param = database_param
        self.default_precision = default_precision
        self.precisions = precisions

    def check(self, request: web.Request, attempt: Attempt) -> influx.InfluxParams:
        check_type(request)
        precision = request.query.get("precision", self.default_precision)
        if precision not in self.precisions:
            raise BadRequest(f"precision must be one of {', '.join(self.precisions)}")
        source = attempt.source = source_of(request, self.database_param)
        settings = request.app[SETTINGS]
        return influx.InfluxParams(precision, source, settings.influx_string_fields,
                                   settings.queue_max_samples)


V1 = LineProtocolWrite("db", "n", ("n", "ns", "u", "ms", "s", "m", "h"))
V2 = LineProtocolWrite("bucket", "ns", ("ns", "us", "ms", "s"))


async def write_v1(request: web.Request) -> web.Response:
    await accept(request, V1)
    # 204 is what InfluxDB answers, and the only success Telegraf's v1 output accepts.
    return web.Response(status=204, headers=VERSION_HEADERS)


async def write_v2(request: web.Request) -> web.Response:
    await accept(request, V2)
    return web.Response(status=204, headers=VERSION_HEADERS)


async def ping(request: web.Request) -> web.Response:
    """`GET|HEAD /ping`: 204 with the version headers, as InfluxDB answers."""
    return web.Response(status=204, headers=VERSION_HEADERS)


async def health(request: web.Request) -> web.Response:
    """`GET /health`: InfluxDB 2's health document, `pass` while pushes can be taken."""
    ready = request.app[LIFECYCLE].accepting and request.app[WRITER].alive
    body: dict[str, Any] = {"name": "influxdb", "message": "ready for queries and writes" if ready
            else "not ready for writes", "status": "pass" if ready else "fail", "checks": [],
            "version": f"metrics-ingest {__version__}", "commit": ""}
    return json_response(body, status=200 if ready else 503, headers=VERSION_HEADERS)


async def statement_of(request: web.Request) -> str:
    query = request.query.get("q")
    if query is None and request.method == "POST":
        query = (await request.post()).get("q")  # type: ignore[assignment]
    if not isinstance(query, str) or not query.strip():
        raise BadRequest("missing required parameter \"q\"")
    return query


async def query(request: web.Request) -> web.Response:
    """`/query`: the statements InfluxDB 1 clients send before writing. `SHOW DATABASES`
    lists the sources with a sample within the retention period; `CREATE DATABASE` succeeds
    without doing anything (a write's database is its source, made by the first write)."""
    results: list[dict[str, Any]] = []
    for statement_id, statement in enumerate(s for s in (await statement_of(request)).split(";")
                                             if s.strip()):
        if SHOW_DATABASES_RE.fullmatch(statement):
            retention = request.app[SETTINGS].retention_days * 86400
            since = int(request.app[CLOCK]()) - retention
            sources = await request.app[READER].active_sources(since)
            results.append({"statement_id": statement_id, "series": [
                {"name": "databases", "columns": ["name"], "values": [[s] for s in sources]}]})
        elif CREATE_DATABASE_RE.fullmatch(statement):
            results.append({"statement_id": statement_id})
        else:
            raise BadRequest(f"metrics-ingest answers only SHOW DATABASES and CREATE DATABASE "
                             f"on /query, not {shorten(statement.strip(), 48)!r}; read with "
                             "/metrics, /api/metrics or a Prometheus in front")
    return json_response({"results": results}, headers=VERSION_HEADERS)
