"""Prometheus's query API (`/api/v1/query`, `query_range`, `series`, `labels`, label values,
`metadata`, `status/buildinfo`, `query_exemplars`) over the stored series, answering as
Prometheus 2.42 does, so Grafana, promtool and vmalert can use the service as a Prometheus.

Expressions are evaluated in worker processes (query_pool.py), the catalog reads (series,
labels, metadata: index lookups of a millisecond, where a worker's round trip would double
them) on threads of their own (query_service.py), each with its own read connection: pushes
keep being answered during a heavy query. A query's deadline (its `timeout`, at most
DEFAULT_TIMEOUT) is checked as it evaluates and interrupts its reads.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from aiohttp import web
from multidict import MultiDict

from metrics_ingest import __version__, promql
from metrics_ingest.http.endpoint import Endpoint
from metrics_ingest.http.prom_errors import prometheus_error, prometheus_error_fields
from metrics_ingest.http.prom_params import (
    FLOAT_RE,
    MAX_TIME,
    MIN_TIME,
    invalid,
    parse_duration,
    parse_time,
    read_form,
    time_param,
)
from metrics_ingest.http.query_service import PROMQL
from metrics_ingest.keys import CLOCK
from metrics_ingest.promql import catalog
from metrics_ingest.promql.functions import LABEL_NAME_RE
from metrics_ingest.promql.selectors import parse_selector
from metrics_ingest.promql.tree import parse
from metrics_ingest.promql.values import BadData, QueryError

DEFAULT_TIMEOUT = 120.0  # seconds, Prometheus's --query.timeout default
T = TypeVar("T")


class Encoded(bytes):
    """`data` already as JSON (a worker process made it)."""


def success(data: Any) -> web.Response:
    # A trailing newline, as every answer of the service has (a curl prints it on its own).
    if isinstance(data, Encoded):
        body = b'{"status":"success","data":' + data + b"}\n"
    else:
        body = orjson.dumps({"status": "success", "data": data}) + b"\n"
    return web.Response(body=body, content_type="application/json")


def answers(handler: Callable[[web.Request, MultiDict[str]], Any]) -> Any:
    """A handler of this API: its form read, its QueryError answered in Prometheus's
    error shape."""

    async def handle(request: web.Request) -> web.StreamResponse:
        form = await read_form(request)
        try:
            return success(await handler(request, form))
        except QueryError as exc:
            return prometheus_error(exc.error_type, exc.message)

    handle.__doc__ = handler.__doc__
    return handle


def deadline_of(form: MultiDict[str]) -> float:
    timeout = DEFAULT_TIMEOUT
    raw = form.get("timeout", "")
    if raw:
        try:
            # Seconds keep their fraction: a tiny timeout is a timeout, not none.
            asked = float(raw) if FLOAT_RE.fullmatch(raw) else parse_duration(raw) / 1000
        except BadData as exc:
            raise invalid("timeout", exc) from None
        if asked <= 0:
            # (Prometheus would start the query with no time at all and answer 503.)
            raise invalid("timeout", BadData("a timeout must be more than zero"))
        timeout = min(timeout, asked)
    return time.monotonic() + timeout


def required_time(form: MultiDict[str], name: str) -> int:
    try:
        return parse_time(form.get(name, ""))
    except BadData as exc:
        raise invalid(name, exc) from None


@answers
async def query(request: web.Request, form: MultiDict[str]) -> Any:
    """An instant query: `query` at `time` (default now)."""
    at = time_param(form, "time", int(request.app[CLOCK]() * 1000))
    deadline = deadline_of(form)
    return Encoded(await request.app[PROMQL].pool.instant(form.get("query", ""), at, deadline))


@answers
async def query_range(request: web.Request, form: MultiDict[str]) -> Any:
    """A range query: `query` at every `step` from `start` to `end`."""
    start = required_time(form, "start")
    end = required_time(form, "end")
    if end < start:
        raise BadData('invalid parameter "end": end timestamp must not be before start time')
    try:
        step = parse_duration(form.get("step", ""))
    except BadData as exc:
        raise invalid("step", exc) from None
    if step <= 0:
        raise BadData('invalid parameter "step": zero or negative query resolution step '
                      "widths are not accepted. Try a positive integer")
    if (end - start) // step > promql.MAX_POINTS:
        raise BadData("exceeded maximum resolution of 11,000 points per timeseries. Try "
                      "decreasing the query resolution (?step=XX)")
    deadline = deadline_of(form)
    return Encoded(await request.app[PROMQL].pool.range(form.get("query", ""), start, end, step,
                                                        deadline))


def selectors(form: MultiDict[str]) -> list[list[Any]]:
    try:
        return [parse_selector(text) for text in form.getall("match[]", [])]
    except BadData as exc:
        raise invalid("match[]", exc) from None


def since_of(form: MultiDict[str]) -> int:
    """`start` in Unix seconds: series with a sample since then (every series without)."""
    start = time_param(form, "start", MIN_TIME)
    time_param(form, "end", MAX_TIME)  # checked as Prometheus checks it
    return start // 1000


def limited(values: list[T], form: MultiDict[str]) -> list[T]:
    raw = form.get("limit", "")
    if not raw:
        return values
    if not raw.isdigit():
        raise BadData('invalid parameter "limit": must be a non-negative integer')
    return values[:int(raw)] if int(raw) > 0 else values


@answers
async def series(request: web.Request, form: MultiDict[str]) -> Any:
    """The label sets of the series `match[]` selects."""
    if not form.getall("match[]", []):
        raise BadData("no match[] parameter provided")
    since = since_of(form)
    matchers = selectors(form)
    found = await request.app[PROMQL].run(
        lambda reader: catalog.matching(reader, matchers, since))
    return limited([dict(labels) for labels in found], form)


@answers
async def labels(request: web.Request, form: MultiDict[str]) -> Any:
    """Every label name (of the series `match[]` selects, when given)."""
    since = since_of(form)
    matchers = selectors(form)
    names = await request.app[PROMQL].run(
        lambda reader: catalog.label_names(reader, matchers, since))
    return limited(names, form)


@answers
async def label_values(request: web.Request, form: MultiDict[str]) -> Any:
    """Every value of one label (in the series `match[]` selects, when given)."""
    name = request.match_info["name"]
    if not LABEL_NAME_RE.fullmatch(name):
        raise BadData(f'invalid label name: "{name}"')
    since = since_of(form)
    matchers = selectors(form)
    values = await request.app[PROMQL].run(
        lambda reader: catalog.label_values(reader, name, matchers, since))
    return limited(values, form)


@answers
async def metadata(request: web.Request, form: MultiDict[str]) -> Any:
    """Each metric's type and HELP, as /metrics declares them."""
    raw = form.get("limit", "")
    limit: int | None = None
    if raw:
        try:
            limit = int(raw)
        except ValueError:
            raise BadData("limit must be a number") from None
        limit = None if limit < 0 else limit
    metric = form.get("metric") or None
    return await request.app[PROMQL].run(lambda reader: catalog.metadata(reader, metric, limit))


@answers
async def buildinfo(request: web.Request, form: MultiDict[str]) -> Any:
    """The Prometheus version whose API this is (clients pick features by it)."""
    return {"version": "2.42.0", "revision": f"metrics-ingest {__version__}",
            "branch": "metrics-ingest", "buildUser": "", "buildDate": "", "goVersion": ""}


@answers
async def query_exemplars(request: web.Request, form: MultiDict[str]) -> Any:
    """No exemplars are stored: a valid query finds none."""
    start = time_param(form, "start", MIN_TIME)
    end = time_param(form, "end", MAX_TIME)
    if end < start:
        raise BadData("end timestamp must not be before start timestamp")
    parse(form.get("query", ""))
    return []


def both(handler: Any) -> dict[str, Any]:
    return {"GET": handler, "POST": handler}


PROMETHEUS_ENDPOINTS = (
    Endpoint("prom_query", "/api/v1/query", "read", both(query),
             error_fields=prometheus_error_fields),
    Endpoint("prom_query_range", "/api/v1/query_range", "read", both(query_range),
             error_fields=prometheus_error_fields),
    Endpoint("prom_series", "/api/v1/series", "read", both(series),
             error_fields=prometheus_error_fields),
    Endpoint("prom_labels", "/api/v1/labels", "read", both(labels),
             error_fields=prometheus_error_fields),
    Endpoint("prom_label_values", "/api/v1/label/{name}/values", "read", {"GET": label_values},
             error_fields=prometheus_error_fields),
    Endpoint("prom_metadata", "/api/v1/metadata", "read", {"GET": metadata},
             error_fields=prometheus_error_fields),
    Endpoint("prom_buildinfo", "/api/v1/status/buildinfo", "read", {"GET": buildinfo},
             error_fields=prometheus_error_fields),
    Endpoint("prom_query_exemplars", "/api/v1/query_exemplars", "read", both(query_exemplars),
             error_fields=prometheus_error_fields),
)
