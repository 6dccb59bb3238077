"""One server process: the app on its port until SIGTERM or SIGINT, then a drain. Run
alone by `serve`, or as each of `serve --workers N` (supervisor.py)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from metrics_ingest.app import create_app, server_options
from metrics_ingest.config import Settings
from metrics_ingest.http.server import (
    ConnectionGuard,
    GuardedRunner,
    connection_bound,
    raise_file_limit,
)
from metrics_ingest.keys import PARSERS, STORE, TLS
from metrics_ingest.sdnotify import Notifier
from metrics_ingest.tls import is_loopback
from metrics_ingest.upkeep import reload_files

log = logging.getLogger("metrics_ingest.cli")

# How long a server may take to stop: aiohttp's grace for open requests, then the queue's
# drain (what the supervisor of `serve --workers` waits before killing a worker).
SHUTDOWN_GRACE_SECONDS = 30.0


async def serve_until_signalled(settings: Settings, worker: int | None = None,
                                notifier: Notifier | None = None,
                                sockets: Sequence[socket.socket] = (),
                                telemetry_dir: Path | None = None) -> None:
    """Serve until signalled. `worker`: this is worker number `worker` of `serve --workers`,
    whose supervisor claimed the store, bound `sockets` for it (listeners.py) and made
    `telemetry_dir` (worker_telemetry.py); alone, the server binds settings.host and port
    itself.
    `notifier` (systemd, or the supervisor's relay) hears READY=1 once the socket listens and
    STOPPING=1 at the signal."""
    notifier = notifier or Notifier(None)
    app = create_app(settings, worker=worker, telemetry_dir=telemetry_dir)
    files = raise_file_limit()
    guard = ConnectionGuard(connection_bound(settings.max_connections, files),
                            settings.header_timeout)
    runner = GuardedRunner(app, guard, handle_signals=False, **server_options(app))
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload_files, app)
    tls = app.get(TLS)
    if tls is None and not is_loopback(settings.host):
        log.warning("serving plain HTTP on %s: tokens cross the network readable; give "
                    "--tls-cert and --tls-key (or put a TLS proxy in front)", settings.host)
    try:
        context = None if tls is None else tls.context
        sites: list[web.BaseSite] = [web.SockSite(runner, sock, ssl_context=context)
                                     for sock in sockets]
        if not sites:
            sites.append(web.TCPSite(runner, settings.host, settings.port, ssl_context=context))
        for site in sites:
            await site.start()
        tune_garbage_collector()
        # The big-body parsers start beside the first requests, not in front of them.
        warming = loop.run_in_executor(None, app[PARSERS].warm)
        for address in runner.addresses:
            host, port = address[0], address[1]
            log.info("%slistening on %s://%s:%d (database %s)",
                     "" if worker is None else f"worker {worker}: ",
                     "http" if tls is None else "https", host, port,
                     app[STORE].location)
        notifier.ready("listening on " + ", ".join(f"{address[0]}:{address[1]}"
                                                   for address in runner.addresses))
        await stop.wait()
        log.info("signal received: refusing new pushes, draining the queue")
        notifier.stopping("draining the queue")
        with contextlib.suppress(Exception):  # a failed warm-up leaves parsing to first use
            await warming
    finally:
        started = time.monotonic()
        await runner.cleanup()
        log.info("stopped cleanly in %.2f s", time.monotonic() - started)


def tune_garbage_collector() -> None:
    """Keep the cyclic collector off the request path once the server is up.

    Everything alive at startup (modules, the app, the series map) is frozen out of
    collections, and the youngest generation collects every 50,000 allocations instead of
    700. Measured on bench W1: push p99 13 -> 5 ms (full collections walked every object of
    the process) and 8% more pushes per second (bench/README.md, "Garbage collector").
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def event_loop_runner() -> asyncio.Runner:
    """uvloop when it is installed (the `fast` extra), else asyncio's own loop."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    with contextlib.suppress(ImportError):
        import uvloop

        factory = uvloop.new_event_loop
    return asyncio.Runner(loop_factory=factory)


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    with event_loop_runner() as runner:
        return runner.run(coro)


