"""`create_app`: middlewares, routes and the cleanup contexts (database -> writer -> cron)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from metrics_ingest import migrations, retention, storage
from metrics_ingest.auth import presented_token, token_matches
from metrics_ingest.config import Settings
from metrics_ingest.errors import Unauthorized, error_middleware
from metrics_ingest.handlers.api import api_metrics, api_sources
from metrics_ingest.handlers.exposition import metrics
from metrics_ingest.handlers.health import healthz, readyz
from metrics_ingest.handlers.ingest import ingest
from metrics_ingest.keys import (
    CLOCK,
    LIFECYCLE,
    QUEUE,
    READER,
    SETTINGS,
    TELEMETRY,
    WRITE_CONN,
    WRITER,
    Lifecycle,
)
from metrics_ingest.logs import AccessLog
from metrics_ingest.telemetry import Telemetry
from metrics_ingest.writer import PushQueue, Writer

log = logging.getLogger("metrics_ingest.app")

PUSH_ROUTES = frozenset({"ingest"})
READ_ROUTES = frozenset({"metrics", "api_metrics", "api_sources"})
CORS_METHODS = "GET, POST, PUT, DELETE, OPTIONS"
CORS_HEADERS = "Authorization, Content-Type, Content-Encoding"
# Handlers still running this long after SIGTERM are cancelled, leaving time to drain the
# writer and close the database inside SPEC's 10 s.
SHUTDOWN_TIMEOUT = 5.0


@web.middleware
async def cors_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Outermost: answers preflights and puts Access-Control-Allow-Origin on every response."""
    origin = request.app[SETTINGS].allowed_origin
    exception = request.match_info.http_exception
    if request.method == "OPTIONS" and (exception is None or exception.status == 405):
        response: web.StreamResponse = web.Response(status=204, headers={
            "Access-Control-Allow-Methods": CORS_METHODS,
            "Access-Control-Allow-Headers": CORS_HEADERS,
            "Access-Control-Max-Age": "86400",
        })
    else:
        response = await handler(request)
    response.headers["Access-Control-Allow-Origin"] = origin
    if origin != "*":
        response.headers["Vary"] = "Origin"
    route = request.match_info.route.resource
    request.app[TELEMETRY].count_request(
        route.canonical if route is not None else "unmatched", response.status)
    return response


@web.middleware
async def auth_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Checks the bearer token before any body is read: push tokens for pushes; for reads, the
    read token (or a push token) when METRICS_READ_TOKEN is set."""
    name = request.match_info.route.name
    settings = request.app[SETTINGS]
    if name in PUSH_ROUTES:
        token = presented_token(request.headers.get("Authorization"))
        if not token_matches(token, settings.auth_tokens):
            request.app[TELEMETRY].count_rejected("auth")
            raise Unauthorized("missing or invalid bearer token" if token is None
                               else "invalid bearer token")
    elif name in READ_ROUTES and settings.read_token is not None:
        token = presented_token(request.headers.get("Authorization"))
        if not token_matches(token, (settings.read_token, *settings.auth_tokens)):
            raise Unauthorized("this endpoint needs the read token")
    response: web.StreamResponse = await handler(request)
    return response


async def database_context(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    applied = await asyncio.to_thread(migrations.migrate, settings.db_path)
    if applied:
        log.info("database %s: applied migrations %s", settings.db_path, ", ".join(applied))
    app[WRITE_CONN] = await storage.open_writer(settings.db_path, settings.synchronous)
    try:
        app[READER] = await storage.open_reader(settings.db_path)
    except BaseException:
        await app[WRITE_CONN].close()
        raise
    yield
    await app[READER].close()
    await app[WRITE_CONN].close()


async def writer_context(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[QUEUE] = queue = PushQueue(settings.queue_max_samples)
    app[WRITER] = writer = Writer(
        app[WRITE_CONN], queue, app[TELEMETRY], settings.batch_max_samples)
    task = asyncio.create_task(writer.run(), name="metrics-ingest-writer")
    yield
    # Pushes already queued are committed and answered before the database closes.
    queue.close()
    try:
        await task
    except Exception:
        log.exception("the writer task had failed; queued pushes were answered 503")


async def purge_context(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    async with retention.scheduled_purge(
        settings.purge_cron, app[WRITER], app[TELEMETRY], settings.retention_days
    ):
        yield


async def stop_accepting(app: web.Application) -> None:
    app[LIFECYCLE].accepting = False


def create_app(settings: Settings, clock: Callable[[], float] = time.time) -> web.Application:
    """The whole object graph; `clock` is injectable so tests can move time."""
    if not settings.auth_tokens:
        raise ValueError("create_app needs at least one push token (see auth.remembered_token)")
    app = web.Application(
        middlewares=[cors_middleware, error_middleware, auth_middleware],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[CLOCK] = clock
    app[TELEMETRY] = Telemetry()
    app[LIFECYCLE] = Lifecycle()
    app.router.add_post("/ingest", ingest, name="ingest")
    app.router.add_get("/metrics", metrics, name="metrics", allow_head=False)
    app.router.add_get("/api/metrics", api_metrics, name="api_metrics", allow_head=False)
    app.router.add_get("/api/sources", api_sources, name="api_sources", allow_head=False)
    app.router.add_get("/healthz", healthz, name="healthz")
    app.router.add_get("/readyz", readyz, name="readyz")
    app.cleanup_ctx.extend([database_context, writer_context, purge_context])
    app.on_shutdown.append(stop_accepting)
    return app


def server_options() -> dict[str, Any]:
    """Options for aiohttp's server, shared by `serve` and the tests' fixtures.

    auto_decompress is off because `body.read_body` inflates gzip itself, within the limit.
    """
    return {
        "auto_decompress": False,
        "access_log_class": AccessLog,
        "shutdown_timeout": SHUTDOWN_TIMEOUT,
    }
