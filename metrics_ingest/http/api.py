"""The JSON API for dashboards: `GET /api/metrics` and `GET /api/sources`."""

from __future__ import annotations

import re
from typing import Any

import orjson
from aiohttp import web

from metrics_ingest import openapi
from metrics_ingest.http.errors import BadRequest, json_response
from metrics_ingest.http.params import only_params
from metrics_ingest.keys import CLOCK, READER, SETTINGS

WINDOW_RE = re.compile(r"([1-9][0-9]{0,9})([smhdw])")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
DEFAULT_WINDOW = "1h"
DEFAULT_LIMIT = 10000
MAX_LIMIT = 50000


def json_number(value: float) -> float | int:
    """Integral values as JSON integers, as the Worker (JavaScript) wrote them."""
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def parse_window(raw: str, retention_days: int) -> int:
    """`<positive integer><s|m|h|d|w>` in seconds, at most the retention period."""
    match = WINDOW_RE.fullmatch(raw)
    if match is None:
        raise BadRequest(
            f"window must be a positive integer followed by s, m, h, d or w, got {raw[:32]!r}")
    seconds = int(match.group(1)) * UNIT_SECONDS[match.group(2)]
    if seconds > retention_days * 86400:
        raise BadRequest(f"window must be at most the retention period ({retention_days}d)")
    return seconds


def parse_limit(raw: str) -> int:
    # isascii: str.isdigit() also accepts digits such as "²" that int() refuses.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 6 or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadRequest(f"limit must be an integer from 1 to {MAX_LIMIT}, got {raw[:32]!r}")
    return int(raw)


def optional_filter(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    if value is not None and (not value or len(value) > 256):
        raise BadRequest(f"{name} must be a non-empty string of at most 256 characters")
    return value


def window_start(request: web.Request) -> int:
    retention = request.app[SETTINGS].retention_days
    window = parse_window(request.query.get("window", DEFAULT_WINDOW), retention)
    return int(request.app[CLOCK]()) - window


METRICS_PARAMS = frozenset({"source", "metric", "window", "limit"})
SOURCES_PARAMS = frozenset({"window"})


async def api_metrics(request: web.Request) -> web.Response:
    only_params(request.query, METRICS_PARAMS)
    since = window_start(request)
    limit = parse_limit(request.query.get("limit", str(DEFAULT_LIMIT)))
    source = optional_filter(request, "source")
    metric = optional_filter(request, "metric")
    rows = await request.app[READER].recent_samples(since, source, metric, limit)
    body: list[dict[str, Any]] = []
    for row in rows:
        item: dict[str, Any] = {
            "source": row.source,
            "timestamp": row.timestamp,
            "metric_name": row.metric_name,
            "metric_value": json_number(row.value),
        }
        if row.labels:
            # Stored as canonical JSON already: pass it through without decoding.
            item["labels"] = orjson.Fragment(row.labels)
        body.append(item)
    return json_response(body)


async def openapi_document(request: web.Request) -> web.Response:
    return json_response(openapi.document())


async def api_sources(request: web.Request) -> web.Response:
    only_params(request.query, SOURCES_PARAMS)
    since = window_start(request)
    return json_response(await request.app[READER].active_sources(since))
