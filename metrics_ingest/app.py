"""`create_app`: middlewares, routes and the cleanup contexts (database -> writer -> cron)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from metrics_ingest import migrations, retention, storage
from metrics_ingest.auth import AuthPolicy
from metrics_ingest.config import Settings
from metrics_ingest.errors import ApiError, Unauthorized, error_response, render_failure
from metrics_ingest.handlers.api import api_metrics, api_sources
from metrics_ingest.handlers.exposition import metrics
from metrics_ingest.handlers.health import healthz, readyz
from metrics_ingest.handlers.ingest import ingest
from metrics_ingest.keys import (
    ACCESS_LOG,
    AUTH,
    CLOCK,
    CORS_HEADERS,
    LIFECYCLE,
    QUEUE,
    READER,
    SETTINGS,
    TELEMETRY,
    WRITE_CONN,
    WRITER,
    Lifecycle,
)
from metrics_ingest.logs import AccessLogSink, access_log_class
from metrics_ingest.telemetry import Telemetry
from metrics_ingest.writer import PushQueue, Writer

log = logging.getLogger("metrics_ingest.app")

PUSH_ROUTES = frozenset({"ingest"})
READ_ROUTES = frozenset({"metrics", "api_metrics", "api_sources"})
PREFLIGHT_HEADERS = {
    "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, Content-Encoding",
    "Access-Control-Max-Age": "86400",
}
# Handlers still running this long after SIGTERM are cancelled, leaving time to drain the
# writer and close the database inside SPEC's 10 s.
SHUTDOWN_TIMEOUT = 5.0


@web.middleware
async def edge_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Everything every request goes through, in one layer (three nested middlewares cost a
    fifth of a small push's time, measured with bench/compare W1):

    CORS preflight -> bearer auth (before any body is read) -> the handler -> SPEC's error body
    for any failure -> Access-Control-Allow-Origin on the answer -> the request counter.
    """
    exception = request.match_info.http_exception
    if request.method == "OPTIONS" and (exception is None or exception.status == 405):
        response: web.StreamResponse = web.Response(status=204, headers=PREFLIGHT_HEADERS)
    else:
        try:
            check_auth(request)
            response = await handler(request)
        except (ApiError, web.HTTPException) as exc:
            response = render_failure(request, exc)
        except Exception:
            log.exception("unhandled error in %s %s", request.method, request.path)
            response = error_response(500, "internal error")
    app = request.app
    response.headers.update(app[CORS_HEADERS])
    resource = request.match_info.route.resource
    app[TELEMETRY].count_request(
        resource.canonical if resource is not None else "unmatched", response.status)
    return response


def check_auth(request: web.Request) -> None:
    """Push routes need a push token; read routes need the read token when one is set."""
    name = request.match_info.route.name
    policy = request.app[AUTH]
    if name in PUSH_ROUTES:
        authorization = request.headers.get("Authorization")
        if not policy.may_push(authorization):
            request.app[TELEMETRY].count_rejected("auth")
            raise Unauthorized("missing or invalid bearer token" if authorization is None
                               else "invalid bearer token")
    elif name in READ_ROUTES and not policy.may_read(request.headers.get("Authorization")):
        raise Unauthorized("this endpoint needs the read token")


async def database_context(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    applied = await asyncio.to_thread(migrations.migrate, settings.db_path)
    if applied:
        log.info("database %s: applied migrations %s", settings.db_path, ", ".join(applied))
    app[WRITE_CONN] = writer = storage.WriteConnection(settings.db_path, settings.synchronous)
    try:
        await writer.open()
        app[READER] = await storage.open_reader(settings.db_path)
    except BaseException:
        await writer.close()
        raise
    yield
    await app[READER].close()
    await writer.close()


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


async def access_log_context(app: web.Application) -> AsyncIterator[None]:
    """Flush buffered request lines at exit (last, as cleanup runs in reverse)."""
    yield
    if ACCESS_LOG in app:
        app[ACCESS_LOG].flush()


async def stop_accepting(app: web.Application) -> None:
    app[LIFECYCLE].accepting = False


def create_app(settings: Settings, clock: Callable[[], float] = time.time) -> web.Application:
    """The whole object graph; `clock` is injectable so tests can move time."""
    if not settings.auth_tokens:
        raise ValueError("create_app needs at least one push token (see auth.remembered_token)")
    app = web.Application(middlewares=[edge_middleware], client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[AUTH] = AuthPolicy.from_tokens(settings.auth_tokens, settings.read_token)
    cors = {"Access-Control-Allow-Origin": settings.allowed_origin}
    if settings.allowed_origin != "*":
        cors["Vary"] = "Origin"
    app[CORS_HEADERS] = cors
    if logging.getLevelName(settings.log_level) <= logging.INFO:
        app[ACCESS_LOG] = AccessLogSink(settings.log_format)
    app[CLOCK] = clock
    app[TELEMETRY] = Telemetry()
    app[LIFECYCLE] = Lifecycle()
    app.router.add_post("/ingest", ingest, name="ingest")
    app.router.add_get("/metrics", metrics, name="metrics", allow_head=False)
    app.router.add_get("/api/metrics", api_metrics, name="api_metrics", allow_head=False)
    app.router.add_get("/api/sources", api_sources, name="api_sources", allow_head=False)
    app.router.add_get("/healthz", healthz, name="healthz")
    app.router.add_get("/readyz", readyz, name="readyz")
    app.cleanup_ctx.extend([access_log_context, database_context, writer_context, purge_context])
    app.on_shutdown.append(stop_accepting)
    return app


def server_options(app: web.Application) -> dict[str, Any]:
    """Options for aiohttp's server, shared by `serve` and the tests' fixtures.

    auto_decompress is off because `body.read_body` inflates gzip itself, within the limit.
    """
    options: dict[str, Any] = {"auto_decompress": False, "shutdown_timeout": SHUTDOWN_TIMEOUT}
    if ACCESS_LOG in app:
        options["access_log_class"] = access_log_class(app[ACCESS_LOG])
    else:
        options["access_log"] = None
    return options
