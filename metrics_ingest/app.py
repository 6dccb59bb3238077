"""`create_app`: middlewares, routes and the cleanup contexts (database -> writer -> cron)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

from metrics_ingest import migrations, retention, storage
from metrics_ingest.auth import AuthPolicy, presented_token
from metrics_ingest.config import Settings
from metrics_ingest.errors import ApiError, Unauthorized, error_response, render_failure
from metrics_ingest.exported import ExportedSeries
from metrics_ingest.handlers import influx as influx_handlers
from metrics_ingest.handlers import pushgateway as pushgateway_handlers
from metrics_ingest.handlers import remote_write as remote_write_handlers
from metrics_ingest.handlers.api import api_metrics, api_sources, openapi_document
from metrics_ingest.handlers.exposition import metrics
from metrics_ingest.handlers.health import healthz, readyz
from metrics_ingest.handlers.ingest import ingest
from metrics_ingest.keys import (
    ACCESS_LOG,
    AUTH,
    CLOCK,
    CORS_HEADERS,
    EXPORTED,
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

PREFLIGHT_HEADERS = {
    "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, Content-Encoding",
    "Access-Control-Max-Age": "86400",
}
# Handlers still running this long after SIGTERM are cancelled, leaving time to drain the
# writer and close the database inside SPEC's 10 s.
SHUTDOWN_TIMEOUT = 5.0


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Access = Literal["push", "read", "open"]


Credentials = Callable[[web.Request], str | None]


def bearer_token(request: web.Request) -> str | None:
    """The token of `Authorization: Bearer <token>`."""
    return presented_token(request.headers.get("Authorization"))


def endpoint(path: str, access: Access, handlers: dict[str, Handler],
             credentials: Credentials = bearer_token) -> Handler:
    """Wrap one path's handlers with what every request goes through, in one plain call:

    CORS preflight -> method dispatch (405 with Allow) -> bearer auth, before any body is read
    -> the handler -> SPEC's error body for any failure -> Access-Control-Allow-Origin -> the
    request counter. A wrapper rather than aiohttp middlewares: with any middleware at all,
    aiohttp adds two layers per request, ~10% of a small push (bench/README.md).
    """
    allowed = ", ".join(sorted(handlers))

    async def handle(request: web.Request) -> web.StreamResponse:
        app = request.app
        try:
            handler = handlers.get(request.method)
            if handler is None:
                if not handlers:
                    raise web.HTTPNotFound()
                if request.method == "OPTIONS":
                    response: web.StreamResponse = web.Response(
                        status=204, headers=PREFLIGHT_HEADERS)
                else:
                    raise web.HTTPMethodNotAllowed(request.method, handlers)
            else:
                if access != "open":
                    check_auth(app, request, access, credentials)
                response = await handler(request)
        except (ApiError, web.HTTPException) as exc:
            response = render_failure(request, exc)
        except Exception:
            log.exception("unhandled error in %s %s", request.method, request.path)
            response = error_response(500, "internal error")
        response.headers.update(app[CORS_HEADERS])
        app[TELEMETRY].count_request(path, response.status)
        return response

    handle.__doc__ = f"{path}: {allowed or 'no such endpoint'}"
    return handle


def check_auth(app: web.Application, request: web.Request, access: Access,
               credentials: Credentials) -> None:
    """Pushes need a push token; reads need the read token when one is set."""
    policy = app[AUTH]
    token = credentials(request)
    if access == "push":
        if not policy.may_push(token):
            app[TELEMETRY].count_rejected("auth")
            raise Unauthorized("missing or invalid bearer token" if token is None
                               else "invalid bearer token")
    elif not policy.may_read(token):
        raise Unauthorized("this endpoint needs the read token")


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str
    access: Access
    handlers: dict[str, Handler]
    credentials: Credentials = bearer_token


ENDPOINTS = (
    Endpoint("ingest", "/ingest", "push", {"POST": ingest}),
    Endpoint("influx_v1", "/write", "push", {"POST": influx_handlers.write_v1},
             influx_handlers.credentials),
    Endpoint("influx_v2", "/api/v2/write", "push", {"POST": influx_handlers.write_v2},
             influx_handlers.credentials),
    Endpoint("remote_write", "/api/v1/write", "push", {"POST": remote_write_handlers.receive}),
    Endpoint("metrics", "/metrics", "read", {"GET": metrics}),
    Endpoint("pushgateway", "/metrics/{grouping:[\\s\\S]+}", "push",
             {"PUT": pushgateway_handlers.push, "POST": pushgateway_handlers.push,
              "DELETE": pushgateway_handlers.push},
             influx_handlers.credentials),
    Endpoint("api_metrics", "/api/metrics", "read", {"GET": api_metrics}),
    Endpoint("api_sources", "/api/sources", "read", {"GET": api_sources}),
    Endpoint("healthz", "/healthz", "open", {"GET": healthz}),
    Endpoint("readyz", "/readyz", "open", {"GET": readyz}),
    Endpoint("openapi", "/api/openapi.json", "open", {"GET": openapi_document}),
)


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
    app = web.Application(client_max_size=settings.max_body_bytes)
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
    app[EXPORTED] = ExportedSeries()
    for spec in ENDPOINTS:
        handle = endpoint(spec.path, spec.access, spec.handlers, spec.credentials)
        app.router.add_route("*", spec.path, handle, name=spec.name)
    # Everything else: SPEC's JSON 404, with CORS, through the same wrapper.
    app.router.add_route("*", "/{path:[\\s\\S]*}", endpoint("unmatched", "open", {}),
                         name="unmatched")
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
