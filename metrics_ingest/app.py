"""`create_app`: the `ENDPOINTS` table and the cleanup contexts (store -> writer -> export ->
cron), each resource started and stopped in one place."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from metrics_ingest import retention
from metrics_ingest.auth import AuthPolicy
from metrics_ingest.config import Settings
from metrics_ingest.export_context import export_context
from metrics_ingest.http import influx as influx_handlers
from metrics_ingest.http import pushgateway as pushgateway_handlers
from metrics_ingest.http import remote_write as remote_write_handlers
from metrics_ingest.http.admin import delete_series_handler
from metrics_ingest.http.api import api_metrics, api_sources, openapi_document
from metrics_ingest.http.endpoint import Endpoint, wrap
from metrics_ingest.http.health import Readiness, healthz, readyz
from metrics_ingest.http.ingest import ingest
from metrics_ingest.http.prom_api import PROMETHEUS_ENDPOINTS
from metrics_ingest.http.prom_errors import prometheus_error_fields
from metrics_ingest.http.query_service import query_context
from metrics_ingest.http.scrape import metrics
from metrics_ingest.http.status_page import FORMAT_NAMES, STATUS_ENDPOINTS, status_context
from metrics_ingest.keys import (
    ACCESS_LOG,
    AUTH,
    CLAIMED,
    CLOCK,
    CORS_HEADERS,
    LIFECYCLE,
    PARSERS,
    QUERIES,
    READER,
    READINESS,
    SERIES_OUTAGE,
    SERVICE_TELEMETRY,
    SETTINGS,
    STORE,
    TELEMETRY,
    TLS,
    WRITER,
    Lifecycle,
)
from metrics_ingest.logs import AccessLogSink, access_log_class
from metrics_ingest.outages import OutageLog
from metrics_ingest.parsing import ParsePool
from metrics_ingest.query_pool import QueryActivity
from metrics_ingest.store import open_store
from metrics_ingest.store.budgets import SeriesLimits
from metrics_ingest.telemetry import Telemetry
from metrics_ingest.tls import Certificates
from metrics_ingest.upkeep import (
    blocks_context,
    expiry_context,
    label_index_context,
    tokens_context,
)
from metrics_ingest.worker_telemetry import ServiceTelemetry
from metrics_ingest.writer import Writer

log = logging.getLogger("metrics_ingest.app")

# Handlers still running this long after SIGTERM are cancelled, leaving time to drain the
# writer and close the database inside SPEC's 10 s.
SHUTDOWN_TIMEOUT = 5.0
WATCH_SECONDS = 2.0  # how often the writer checks its database is still the file at the path

ENDPOINTS = (
    Endpoint("ingest", "/ingest", "push", {"POST": ingest}),
    Endpoint("influx_v1", "/write", "push", {"POST": influx_handlers.write_v1},
             influx_handlers.credentials, influx_handlers.error_fields),
    Endpoint("influx_v2", "/api/v2/write", "push", {"POST": influx_handlers.write_v2},
             influx_handlers.credentials, influx_handlers.error_fields),
    Endpoint("influx_query", "/query", "push",
             {"GET": influx_handlers.query, "POST": influx_handlers.query},
             influx_handlers.credentials, influx_handlers.error_fields),
    Endpoint("influx_ping", "/ping", "open",
             {"GET": influx_handlers.ping, "HEAD": influx_handlers.ping}),
    Endpoint("influx_health", "/health", "open", {"GET": influx_handlers.health},
             error_fields=influx_handlers.error_fields),
    Endpoint("remote_write", "/api/v1/write", "push", {"POST": remote_write_handlers.receive}),
    Endpoint("metrics", "/metrics", "read", {"GET": metrics}),
    Endpoint("pushgateway", "/metrics/{grouping:[\\s\\S]+}", "push",
             {"PUT": pushgateway_handlers.push, "POST": pushgateway_handlers.push,
              "DELETE": pushgateway_handlers.push},
             influx_handlers.credentials),
    Endpoint("api_metrics", "/api/metrics", "read", {"GET": api_metrics}),
    Endpoint("api_sources", "/api/sources", "read", {"GET": api_sources}),
    Endpoint("delete_series", "/api/v1/admin/tsdb/delete_series", "admin",
             {"POST": delete_series_handler, "PUT": delete_series_handler},
             error_fields=prometheus_error_fields),
    *PROMETHEUS_ENDPOINTS,
    Endpoint("healthz", "/healthz", "open", {"GET": healthz}),
    Endpoint("readyz", "/readyz", "open", {"GET": readyz}),
    Endpoint("openapi", "/api/openapi.json", "open", {"GET": openapi_document}),
    *STATUS_ENDPOINTS,
)


async def store_context(app: web.Application) -> AsyncIterator[None]:
    """Claim the store, migrate, then open the read session; the write session is the
    writer's."""
    store = app[STORE]
    if not app[CLAIMED]:
        store.claim()
    try:
        applied = await asyncio.to_thread(store.migrate)
        if applied:
            log.info("database %s: applied migrations %s", store.location, ", ".join(applied))
        app[READER] = reader = await store.open_reader()
        try:
            yield
        finally:
            await reader.close()
    finally:
        if not app[CLAIMED]:
            store.release()


async def writer_context(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[WRITER] = writer = Writer(app[STORE], settings.synchronous, app[TELEMETRY],
                                  settings.batch_max_samples, settings.queue_max_samples)
    await writer.start()
    watchdog = asyncio.create_task(writer.watch(WATCH_SECONDS), name="store-watchdog")
    yield
    watchdog.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watchdog
    # Pushes already queued are committed and answered before the database closes.
    await writer.stop()


async def telemetry_context(app: web.Application) -> AsyncIterator[None]:
    """Under `serve --workers`: this worker's counts written for the others every second,
    and once more after the writer drained (this context is left after the writer's)."""
    task = asyncio.create_task(app[SERVICE_TELEMETRY].publish_every(), name="telemetry")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def parsers_context(app: web.Application) -> AsyncIterator[None]:
    """The worker processes that parse big bodies (started on first use)."""
    app[PARSERS] = pool = ParsePool()
    yield
    await pool.close()


async def purge_context(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    async with retention.scheduled_purge(
        settings.purge_cron, app[WRITER], app[TELEMETRY], settings.retention_days
    ):
        yield


async def access_log_context(app: web.Application) -> AsyncIterator[None]:
    """Flush buffered request lines at exit (last, as cleanup runs in reverse)."""
    yield
    if ACCESS_LOG in app:
        app[ACCESS_LOG].flush()


async def stop_accepting(app: web.Application) -> None:
    app[LIFECYCLE].accepting = False


def create_app(settings: Settings, clock: Callable[[], float] = time.time,
               worker: int | None = None, telemetry_dir: Path | None = None
               ) -> web.Application:
    """The whole object graph; `clock` is injectable so tests can move time. `worker`: this
    server is that worker of `serve --workers`, whose supervisor holds the store's claim
    and made `telemetry_dir` for every worker's counts (worker_telemetry.py)."""
    if not settings.auth_tokens and settings.tokens_file is None:
        raise ValueError("create_app needs a push token or a tokens file "
                         "(see auth.remembered_token)")
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[STORE] = open_store(settings.database, shared=settings.workers > 1,
                            limits=SeriesLimits(settings.max_series_per_source,
                                                settings.max_series))
    app[CLAIMED] = worker is not None
    app[AUTH] = AuthPolicy(settings.auth_tokens, settings.read_token, settings.admin_token,
                           settings.tokens_file)
    cors = {"Access-Control-Allow-Origin": settings.allowed_origin}
    if settings.allowed_origin != "*":
        cors["Vary"] = "Origin"
    app[CORS_HEADERS] = cors
    if settings.tls_cert is not None and settings.tls_key is not None:
        app[TLS] = Certificates(settings.tls_cert, settings.tls_key)
    if logging.getLevelName(settings.log_level) <= logging.INFO:
        app[ACCESS_LOG] = AccessLogSink(settings.log_format)
    app[CLOCK] = clock
    app[TELEMETRY] = Telemetry()
    app[SERVICE_TELEMETRY] = ServiceTelemetry(
        app[TELEMETRY], lambda: app[WRITER].queued_samples if WRITER in app else 0,
        FORMAT_NAMES, telemetry_dir, worker or 0)
    app[SERVICE_TELEMETRY].take_over()
    app[SERIES_OUTAGE] = OutageLog(logging.getLogger("metrics_ingest.http"),
                                   "/metrics without metrics_ingest_series", logging.WARNING)
    app[LIFECYCLE] = Lifecycle()
    app[READINESS] = Readiness()
    app[QUERIES] = QueryActivity()
    for spec in ENDPOINTS:
        app.router.add_route("*", spec.path, wrap(spec), name=spec.name)
    # Everything else: SPEC's JSON 404, with CORS, through the same wrapper.
    app.router.add_route("*", "/{path:[\\s\\S]*}", wrap(Endpoint("unmatched", "", "open", {})),
                         name="unmatched")
    app.cleanup_ctx.extend([access_log_context, telemetry_context, tokens_context,
                            parsers_context, store_context, query_context, writer_context,
                            export_context, status_context,
                            expiry_context, label_index_context, blocks_context,
                            purge_context])
    app.on_shutdown.append(stop_accepting)
    return app


def server_options(app: web.Application) -> dict[str, Any]:
    """Options for aiohttp's server, shared by `serve` and the tests' fixtures.

    auto_decompress is off because parsing.py inflates gzip itself, within the limit.
    """
    options: dict[str, Any] = {"auto_decompress": False, "shutdown_timeout": SHUTDOWN_TIMEOUT,
                               "keepalive_timeout": app[SETTINGS].keepalive_timeout}
    if ACCESS_LOG in app:
        options["access_log_class"] = access_log_class(app[ACCESS_LOG])
    else:
        options["access_log"] = None
    return options
