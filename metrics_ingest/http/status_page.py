"""`GET /` (every source: is it still pushing, its last hour, the Pushgateway-API groups, the
service's state) and `GET /sources/<name>` (a source's families with their newest values and
a sparkline of the last hour): pages for people, rendered on the server.

They answer to the read token as the JSON API does, given as a bearer header or kept in the
session's cookie (status_actions.py); without a valid one, where reads are not public, they
answer a sign-in form. Store reads run on a thread of their own with one read connection;
the last hour's counts come from the service's own counters (status/activity.py)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import TypeVar

from aiohttp import web
from cronsim import CronSim

from metrics_ingest import __version__
from metrics_ingest.http import influx
from metrics_ingest.http.endpoint import Endpoint, check_auth
from metrics_ingest.http.errors import ApiError, Unauthorized
from metrics_ingest.http.ingest import JSON_PUSH
from metrics_ingest.http.pushgateway import GROUP_PUSH
from metrics_ingest.http.remote_write import REMOTE_WRITE
from metrics_ingest.http.status_actions import (
    delete_group,
    html,
    login,
    logout,
    page_credentials,
)
from metrics_ingest.keys import (
    AUTH,
    CLOCK,
    PRINCIPAL,
    SERVICE_TELEMETRY,
    SETTINGS,
    STORE,
    WRITER,
)
from metrics_ingest.model import SOURCE_RE
from metrics_ingest.status.activity import TICK_SECONDS, Activity
from metrics_ingest.status.figures import (
    FamilyView,
    ServiceState,
    SourceRow,
    attach_samples,
    formats_by_source,
    group_rows,
    plan_families,
    source_rows,
)
from metrics_ingest.status.layout import COOKIE, message_page, sign_in_page
from metrics_ingest.status.overview_page import Viewer, render_overview
from metrics_ingest.status.source_page import render_source
from metrics_ingest.store import StatusReader, StorageError, Store
from metrics_ingest.telemetry import Telemetry

T = TypeVar("T")

SERIES_LIMIT = 2000  # series of one source read for its page
SPARK_SECONDS = 3.0  # reading the last hour's samples for the sparklines stops after this
HOUR = 3600
FORMAT_NAMES: dict[object, str] = {
    JSON_PUSH: "JSON", influx.V1: "Influx v1", influx.V2: "Influx v2",
    REMOTE_WRITE: "remote_write", GROUP_PUSH: "Pushgateway"}


class StatusService:
    """The pages' state: the Activity ticked in the background, and one status reader,
    opened on first use and used by one thread at a time (pages are few: they queue)."""

    def __init__(self, store: Store, activity: Activity) -> None:
        self.store = store
        self.activity = activity
        self.reader: StatusReader | None = None
        self.lock = asyncio.Lock()

    async def read(self, work: Callable[[StatusReader], T]) -> T:
        async with self.lock:
            return await asyncio.to_thread(self._run, work)

    def _run(self, work: Callable[[StatusReader], T]) -> T:
        if self.reader is None:
            self.reader = self.store.open_status_reader()
        return work(self.reader)

    async def close(self) -> None:
        async with self.lock:  # a read on its thread cannot be cancelled: let it finish
            if self.reader is not None:
                await asyncio.to_thread(self.reader.close)


STATUS = web.AppKey("status", StatusService)


async def status_context(app: web.Application) -> AsyncIterator[None]:
    clock = app[CLOCK]
    counts = app[SERVICE_TELEMETRY]
    app[STATUS] = service = StatusService(app[STORE], Activity(counts.read()[0], clock()))

    async def ticks() -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            service.activity.tick(clock(), counts.read()[0])

    task = asyncio.create_task(ticks(), name="status-ticks")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await service.close()


def compressed(response: web.Response) -> web.Response:
    """gzip or deflate when the browser takes it (1,000 sources: 800 kB of HTML, 60 kB)."""
    response.enable_compression()
    return response


def viewer_of(request: web.Request) -> Viewer:
    policy = request.app[AUTH]
    principal = request.get(PRINCIPAL)
    if principal is None:
        return Viewer(None, frozenset(), policy.reads_public, lambda job: False)
    return Viewer(principal.name, principal.roles, policy.reads_public,
                  lambda job: "admin" in principal.roles and principal.forbidden([job]) is None)


def refused(request: web.Request, exc: ApiError) -> web.Response:
    """A page's answer for a request without the read role: the sign-in form (and the
    cookie forgotten when it held a token no longer accepted), or the error in words."""
    if isinstance(exc, Unauthorized):
        stale = COOKIE in request.cookies
        message = "The saved token is no longer accepted; sign in again." if stale else None
        response = html(sign_in_page(request.path_qs, message), 401)
        if stale:
            response.del_cookie(COOKIE, path="/")
        return response
    return html(message_page(exc.status, exc.message), exc.status, exc.headers)


def service_state(app: web.Application, telemetry: Telemetry, queued: int,
                  unsourced: dict[str, int], now: float) -> ServiceState:
    """`telemetry`, `queued`: the service's (worker_telemetry.py)."""
    settings = app[SETTINGS]
    writer = app[WRITER]
    next_purge = next(CronSim(settings.purge_cron, datetime.fromtimestamp(now, UTC)))
    health = writer.health
    return ServiceState(
        __version__, "PostgreSQL" if settings.db_url is not None else "SQLite",
        app[STORE].size_bytes(), queued, writer.inbox.max_samples * settings.workers,
        None if health.healthy else health.last_error or "the database refuses writes",
        telemetry.last_purge, next_purge.timestamp(), app[STATUS].activity.started,
        settings.workers, unsourced)


def rows_for(app: web.Application, telemetry: Telemetry, stored: dict[str, int],
             series: dict[str, int], now: float, only: str | None = None) -> list[SourceRow]:
    activity = app[STATUS].activity
    activity.note_pushes(telemetry)
    hour = activity.hour(now, telemetry)
    last_push = telemetry.last_push
    if only is not None:
        stored = {only: stored[only]} if only in stored else {}
        last_push = {only: last_push[only]} if only in last_push else {}
    return [row for row in source_rows(stored, series, last_push, hour,
                                       formats_by_source(telemetry.pushed_with, FORMAT_NAMES),
                                       activity, app[SETTINGS].stale_after, now)
            if only is None or row.name == only]


async def overview(request: web.Request) -> web.Response:
    app = request.app
    try:
        check_auth(app, request, "read", page_credentials)
    except ApiError as exc:
        return refused(request, exc)
    now = app[CLOCK]()
    problem = None
    try:
        stored, series, groups = await app[STATUS].read(
            lambda reader: (reader.source_times(), reader.series_counts(), reader.groups()))
    except StorageError as exc:
        stored, series, groups = {}, {}, []
        problem = f"The database cannot be read: {exc}"
    telemetry, queued = app[SERVICE_TELEMETRY].read()
    rows = rows_for(app, telemetry, stored, series, now)
    hour = app[STATUS].activity.hour(now, telemetry)
    _, unsourced = hour.rejected_by_source()
    # The figures are taken here, on the loop that changes them; the HTML (25 ms for 1,000
    # sources) is written on a thread, so pushes are answered meanwhile.
    text = await asyncio.to_thread(render_overview, rows, group_rows(groups),
                                   service_state(app, telemetry, queued, unsourced, now),
                                   hour.covers,
                                   viewer_of(request), now, problem)
    return compressed(html(text))


async def source(request: web.Request) -> web.Response:
    app = request.app
    try:
        check_auth(app, request, "read", page_credentials)
    except ApiError as exc:
        return refused(request, exc)
    name = request.match_info["name"]
    now = app[CLOCK]()
    end = int(now)
    start = end - HOUR

    def work(reader: StatusReader) -> tuple[dict[str, int], dict[str, int],
                                            list[FamilyView], int, str | None]:
        stored = reader.source_times()
        series = reader.series_counts()
        rows = reader.source_series(name, SERIES_LIMIT) if name in stored else []
        families = plan_families(rows, reader.families())
        failed = None
        reader.set_deadline(time.monotonic() + SPARK_SECONDS)
        try:
            samples = reader.samples([i for view in families for i in view.plotted],
                                     start, end)
        except StorageError:
            samples, failed = {}, "the last hour's samples could not be read in time"
        finally:
            reader.set_deadline(None)
        attach_samples(families, samples)
        return stored, series, families, len(rows), failed

    if not SOURCE_RE.fullmatch(name):
        return html(message_page(404, f"No source is named {name[:64]!r}."), 404)
    try:
        stored, series, families, listed, failed = await app[STATUS].read(work)
    except StorageError as exc:
        return html(message_page(503, f"The database cannot be read: {exc}"), 503,
                    {"Retry-After": "5"})
    found = rows_for(app, app[SERVICE_TELEMETRY].read()[0], stored, series, now, only=name)
    if not found:
        return html(message_page(404, f"No source named {name!r} is stored or has pushed "
                                      "to this server."), 404)
    return compressed(html(render_source(name, found[0], families, listed, SERIES_LIMIT,
                                         start, end, app[STATUS].activity.covers(now),
                                         viewer_of(request), now, failed)))


# The pages check the read role themselves ("open" here) to answer a sign-in form instead
# of a JSON 401; deleting needs the admin role, checked by the endpoint wrapper.
STATUS_ENDPOINTS = (
    Endpoint("status", "/", "open", {"GET": overview}),
    Endpoint("status_source", "/sources/{name}", "open", {"GET": source}),
    Endpoint("status_login", "/login", "open", {"POST": login}),
    Endpoint("status_logout", "/logout", "open", {"POST": logout}),
    Endpoint("status_delete_group", "/groups/delete", "admin", {"POST": delete_group},
             page_credentials),
)
