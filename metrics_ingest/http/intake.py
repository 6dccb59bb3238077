"""One intake for every push format: the body read within its limits and deadline, the
format's parser, the writer's inbox and the wait for the commit, and the rejection counter."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from aiohttp import web

from metrics_ingest import slices
from metrics_ingest.http.body import content_encoding, read_raw
from metrics_ingest.http.errors import (
    ApiError,
    BadRequest,
    Forbidden,
    PayloadTooLarge,
    RequestTimeout,
    ServiceUnavailable,
    Unprocessable,
)
from metrics_ingest.inbox import Closed, Overloaded, StorageFailed
from metrics_ingest.keys import CLOCK, LIFECYCLE, PARSERS, PRINCIPAL, SETTINGS, TELEMETRY, WRITER
from metrics_ingest.model import (
    BodyRefused,
    OverBudget,
    Parsed,
    Push,
    PushInvalid,
    PushRefused,
)
from metrics_ingest.parsing import Parse
from metrics_ingest.tokens import Principal, SourceScope
from metrics_ingest.writer import Writer

REJECTION_REASONS = {
    400: "invalid", 403: "forbidden", 408: "timeout", 413: "too_large", 415: "unsupported_type",
    422: "series_limit", 503: "overload"}


class Attempt:
    """One push on its way in: when it arrived, and its source once known (for the rejection
    counter)."""

    __slots__ = ("now", "payload", "source")

    def __init__(self, now: float) -> None:
        self.now = now
        self.source: str | None = None
        self.payload: Any = None  # what `check` learnt that `parse` needs (the grouping)


class PushFormat(Protocol):
    """A push format, as the intake runs it: `check` before the body is read (headers, the
    path, query parameters; it may note the source) returns the parameters that `parse` takes
    with the body. `parse` is a pure module-level function (picklable): a big body is parsed
    in a worker process. `raw`: the body is compressed inside (snappy), not inflated here."""

    raw: bool

    def check(self, request: web.Request, attempt: Attempt) -> Any: ...

    @property
    def parse(self) -> Parse: ...


class StorageUnavailable(ServiceUnavailable):
    """The database refused the write (counted as `storage`, not `overload`)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retry_after=5)


def refused_body(exc: BodyRefused) -> ApiError:
    return PayloadTooLarge(exc.message) if exc.status == 413 else BadRequest(exc.message)


async def accept(request: web.Request, fmt: PushFormat) -> tuple[Parsed, int]:
    """Check, read and parse a push, queue it and wait for the commit that holds it; returns
    it with the number of samples stored. Every refusal on the way is counted once (with the
    source when known) and re-raised as the error answer. A push the format refuses but
    records (`Parsed.refusal`: a Pushgateway push with timestamps) is committed, then
    refused. One coroutine for it all: each await layer costs a small push ~1 us."""
    app = request.app
    attempt = Attempt(app[CLOCK]())
    parsed: Parsed | None = None
    try:
        params = fmt.check(request, attempt)
        settings = app[SETTINGS]
        encoding = "identity" if fmt.raw else content_encoding(request)
        raw = await body_of(request)
        try:
            parsed = await app[PARSERS].parse(fmt.parse, raw, encoding,
                                              settings.max_body_bytes, params, attempt.now,
                                              fmt.raw)
        except PushInvalid as exc:
            attempt.source = attempt.source or exc.source
            raise invalid_push(exc) from None
        except BodyRefused as exc:
            attempt.source = attempt.source or exc.source
            raise refused_body(exc) from None
        principal = request.get(PRINCIPAL)
        if principal is not None and principal.scope is not None:
            check_scope(principal, principal.scope, parsed, attempt)
        push = new_push(app, parsed, attempt.now)
        if push is not None:
            writer = app[WRITER]
            try:
                if push.samples > settings.batch_max_samples and push.group is None:
                    # Bigger than a batch: its series are made first, a slice at a time
                    # (store/preparing.py), so its commit holds other pushes up only briefly.
                    room(writer, push.samples)
                    await slices.prepare(writer, push)
                submit(writer, push)
                await push.done
                push.prepared = None  # (used up)
            except (StorageFailed, Closed) as exc:
                raise StorageUnavailable(str(exc)) from None
            except OverBudget as exc:
                raise Unprocessable(str(exc)) from None
            except PushRefused as exc:
                raise BadRequest(f"pushed metrics are invalid or inconsistent with existing "
                                 f"metrics: {exc}") from None
            finally:
                if push.prepared is not None:  # prepared, then not stored
                    slices.abandon(writer, push)
            committed(app, push, attempt.now, fmt)
        if parsed.refusal is not None:
            raise BadRequest(f"pushed metrics are invalid or inconsistent with existing "
                             f"metrics: {parsed.refusal}", errors=parsed.refusal.errors)
    except ApiError as exc:
        reason = ("storage" if isinstance(exc, StorageUnavailable)
                  else REJECTION_REASONS.get(exc.status, "invalid"))
        source = attempt.source
        if source is None and parsed is not None:
            sources = {group.source for group in parsed.groups}
            source = sources.pop() if len(sources) == 1 else None
        app[TELEMETRY].count_rejected(reason, source)
        raise
    if parsed.skip_counts:
        skipped = app[TELEMETRY].skipped_samples
        for key, count in parsed.skip_counts.items():
            skipped[key] += count
    return parsed, 0 if push is None else push.samples


def check_scope(principal: Principal, scope: SourceScope, parsed: Parsed,
                attempt: Attempt) -> None:
    """403 unless the token may write every source of the push (remote_write: each series'
    source; the Pushgateway API: the job; Influx: the bucket or database)."""
    groups = parsed.groups
    if len(groups) == 1 and parsed.group is None and not parsed.stale:
        source = groups[0].source  # the usual push: one source, one remembered decision
        if scope.allows(source):
            return
        denied: str | None = source
    else:
        sources = {group.source for group in groups}
        sources.update(group.source for group in parsed.stale or ())
        if parsed.group is not None:
            sources.add(parsed.group.grouping.source)
        denied = principal.forbidden(sorted(sources))
    if denied is not None:
        attempt.source = denied
        raise Forbidden(f"token {principal.name!r} may not write source {denied!r}; "
                        "nothing was stored")


async def body_of(request: web.Request) -> bytes:
    """The request body as sent, within METRICS_MAX_BODY_BYTES and METRICS_BODY_TIMEOUT."""
    settings = request.app[SETTINGS]
    if request.content.is_eof():
        # The whole body came with the headers (a small push): nothing to wait for, so no
        # timer to arm (asyncio.timeout cost ~4% of a small push's loop time).
        return await read_raw(request, settings.max_body_bytes)
    try:
        # A client trickling its body holds only its own connection, and only this long.
        async with asyncio.timeout(settings.body_timeout):
            return await read_raw(request, settings.max_body_bytes)
    except TimeoutError:
        raise RequestTimeout(
            f"the body did not arrive within {settings.body_timeout} s") from None


def text_of(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the body is not UTF-8 text") from None


def invalid_push(exc: PushInvalid) -> BadRequest:
    return BadRequest(f"invalid push: {exc}", errors=exc.errors)


def queue(app: web.Application, parsed: Parsed, now: float) -> Push | None:
    """Queue the samples (and what a Pushgateway-API push does to its group) for the writer;
    None when there is nothing to store. Raises the 413/503 a push that cannot go gets."""
    push = new_push(app, parsed, now)
    if push is not None:
        submit(app[WRITER], push)
    return push


def new_push(app: web.Application, parsed: Parsed, now: float) -> Push | None:
    """The push to queue; None when there is nothing to store. Raises the 413/503 a push
    that cannot go gets."""
    groups = parsed.groups
    if not groups and parsed.group is None and not parsed.families and not parsed.stale:
        return None  # (remote_write's metadata-only requests are something to store)
    if not app[LIFECYCLE].accepting:
        raise ServiceUnavailable("the service is shutting down; retry against its successor")
    writer = app[WRITER]
    lost = writer.health.lost
    if lost is not None:
        raise StorageUnavailable(lost)
    count = len(groups[0].names) if len(groups) == 1 else sum(len(g.names) for g in groups)
    if count > writer.inbox.max_samples:
        raise PayloadTooLarge(
            f"the push holds {count} samples; at most {writer.inbox.max_samples} fit in one "
            "push")
    return Push(groups, count, now, writer.loop.create_future(), parsed.group,
                parsed.families, parsed.typing, parsed.stale)


def room(writer: Writer, samples: int) -> None:
    """503 unless the write queue has room for `samples` now."""
    waiting = writer.queued_samples
    if waiting + samples > writer.inbox.max_samples:
        raise ServiceUnavailable(f"overloaded: the write queue is full ({waiting} samples "
                                 "waiting); retry shortly")


def submit(writer: Writer, push: Push) -> None:
    try:
        writer.submit(push)
    except Overloaded as exc:
        raise ServiceUnavailable(f"overloaded: {exc}; retry shortly") from None
    except Closed as exc:
        raise ServiceUnavailable(str(exc)) from None


def committed(app: web.Application, push: Push, now: float, fmt: PushFormat) -> None:
    """What a committed push leaves in the self-metrics (time of receipt per source) and
    for the status page (the format each source pushes with): one dict update more per
    sample group (bench/README.md, "Status page": 40 ns a push)."""
    telemetry = app[TELEMETRY]
    last_push = telemetry.last_push
    pushed_with = telemetry.pushed_with[fmt]
    for sample_group in push.groups:
        source = sample_group.source
        last_push[source] = now
        pushed_with[source] = now
