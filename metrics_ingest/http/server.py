"""The HTTP server's connections: an idle keep-alive timeout, a deadline for request headers,
a bound on open connections (the longest idle one makes room for a new client), and SPEC's
JSON body for the errors aiohttp answers itself (a bad request line, headers too long).

aiohttp has the keep-alive timeout; the rest lives in a subclass of its connection handler,
which `GuardedRunner` puts in place of aiohttp's own (a private seam of aiohttp's server,
kept to these few lines and covered by tests against the real CLI).
"""

from __future__ import annotations

import asyncio
import logging
import resource
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

log = logging.getLogger("metrics_ingest.http")

RESERVED_FILES = 128  # descriptors kept free of connections: the database, logs, workers
IDLE_GRACE = 1.0  # seconds without a byte before a connection counts as idle
BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        b"Retry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s")
SLOW = (b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: %d\r\n\r\n%s")


def raise_file_limit() -> int:
    """Raise the soft limit on open files to the hard one; returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


def connection_bound(configured: int, file_limit: int) -> int:
    return max(16, min(configured, file_limit - RESERVED_FILES))


def raw_error(template: bytes, message: str) -> bytes:
    body = orjson.dumps({"status": "error", "error": message})
    return template % (len(body), body)


@dataclass
class ConnectionGuard:
    """The open connections and their limits; one per server."""

    max_connections: int
    header_timeout: float
    handlers: dict[GuardedHandler, float] = field(default_factory=dict)  # -> last activity

    def make_room(self) -> bool:
        """At the bound, close the connection idle the longest; False if none is idle."""
        if len(self.handlers) < self.max_connections:
            return True
        quiet = asyncio.get_running_loop().time() - IDLE_GRACE
        idle = [(seen, handler) for handler, seen in self.handlers.items()
                if seen < quiet and handler.idle]
        if not idle:
            return False
        _, oldest = min(idle, key=lambda item: item[0])
        oldest.force_close()
        self.handlers.pop(oldest, None)
        return True


class GuardedHandler(RequestHandler):
    __slots__ = ("_deadline", "_guard")

    def __init__(self, manager: Any, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._deadline: asyncio.TimerHandle | None = None

    @property
    def idle(self) -> bool:
        return not self._request_in_progress and not self._messages and self._deadline is None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._guard.make_room():
            log.warning("refused a connection: %d open, none idle",
                        self._guard.max_connections)
            transport.write(raw_error(BUSY, "too many open connections; retry shortly"))  # type: ignore[attr-defined]
            transport.close()
            return
        self._guard.handlers[self] = self._loop.time()
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        guard = self._guard
        waiting = not self._request_in_progress and not self._messages
        super().data_received(data)
        if self in guard.handlers:
            guard.handlers[self] = self._loop.time()
        if self._messages or self._request_in_progress:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None
        elif waiting and self._deadline is None and guard.header_timeout > 0:
            self._deadline = self._loop.call_later(guard.header_timeout, self._too_slow)

    def _too_slow(self) -> None:
        """The request's headers did not arrive in time: a 408, and the connection closes."""
        self._deadline = None
        if self._messages or self._request_in_progress or self.transport is None:
            return
        seconds = f"{self._guard.header_timeout:g}"
        self.transport.write(raw_error(SLOW, f"the request headers did not arrive within "
                                             f"{seconds} s"))
        self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._guard.handlers.pop(self, None)
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        super().connection_lost(exc)

    def handle_error(self, request: BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """What aiohttp answers itself (its parser refused the request), in SPEC's shape;
        never a traceback."""
        super().handle_error(request, status, exc, message)  # it logs, and checks the writer
        words = {400: "malformed request", 413: "request too large",
                 431: "request header fields too large"}.get(status, "internal error")
        detail = f"{words}: {message}" if message and status != 500 else words
        error = web.Response(status=status, content_type="application/json",
                             body=orjson.dumps({"status": "error", "error": detail[:300]}))
        error.force_close()
        return error


class GuardedServer(web.Server):
    guard: ConnectionGuard

    def __call__(self) -> RequestHandler:
        return GuardedHandler(self, self.guard, loop=self._loop, **self._kwargs)


class GuardedRunner(web.AppRunner):
    """An AppRunner whose server's connections are GuardedHandlers."""

    def __init__(self, app: web.Application, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.guard = guard

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = GuardedServer
        server.guard = self.guard  # type: ignore[attr-defined]
        return server
