"""Every piece of application state, as typed `web.AppKey`s (no module-level state anywhere)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from metrics_ingest import tokens
from metrics_ingest.auth import AuthPolicy
from metrics_ingest.config import Settings
from metrics_ingest.export import ExportCache
from metrics_ingest.logs import AccessLogSink
from metrics_ingest.outages import OutageLog
from metrics_ingest.parsing import ParsePool
from metrics_ingest.query_pool import QueryActivity
from metrics_ingest.store import ReadSession, Store
from metrics_ingest.telemetry import Telemetry
from metrics_ingest.tls import Certificates
from metrics_ingest.worker_telemetry import ServiceTelemetry
from metrics_ingest.writer import Writer


@dataclass
class Lifecycle:
    """Flipped by on_shutdown so pushes get 503 while the writer drains what it holds."""

    accepting: bool = True


SETTINGS = web.AppKey("settings", Settings)
CLOCK: web.AppKey[Callable[[], float]] = web.AppKey("clock")
TELEMETRY = web.AppKey("telemetry", Telemetry)  # this process's counters
# What /metrics and the status page show: the service's (every worker's under --workers).
SERVICE_TELEMETRY = web.AppKey("service_telemetry", ServiceTelemetry)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
STORE: web.AppKey[Store] = web.AppKey("store")
READER: web.AppKey[ReadSession] = web.AppKey("reader")
AUTH = web.AppKey("auth", AuthPolicy)
CORS_HEADERS: web.AppKey[dict[str, str]] = web.AppKey("cors_headers")
ACCESS_LOG = web.AppKey("access_log", AccessLogSink)
EXPORT = web.AppKey("export", ExportCache)
WRITER = web.AppKey("writer", Writer)
QUERIES = web.AppKey("queries", QueryActivity)
PARSERS = web.AppKey("parsers", ParsePool)
READINESS: web.AppKey[Any] = web.AppKey("readiness")  # http.health.Readiness
CLAIMED = web.AppKey("claimed", bool)  # the supervisor of `serve --workers` holds the claim
# Scrapes that found the series counts unreadable (http/scrape.py): said once an outage.
SERIES_OUTAGE = web.AppKey("series_outage", OutageLog)
TLS = web.AppKey("tls", Certificates)  # when serving HTTPS
PRINCIPAL = tokens.PRINCIPAL  # on a request: its token's Principal
