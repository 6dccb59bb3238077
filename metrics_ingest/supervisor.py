"""`serve --workers N`: N server processes on one port (SO_REUSEPORT: the kernel spreads
connections over them) and one database, started and watched by this process. It claims
the store for them (SQLite: the file's lock), migrates once, restarts a worker that dies,
and passes SIGTERM/SIGINT on, then waits for every worker to drain."""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import threading
import time
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType

from metrics_ingest.config import Settings
from metrics_ingest.counts_directory import CountsDirectory
from metrics_ingest.listeners import bind_listeners, bound_port
from metrics_ingest.logs import configure_logging
from metrics_ingest.processes import wait_for_exit
from metrics_ingest.sdnotify import Notifier, ReadinessRelay
from metrics_ingest.serve import SHUTDOWN_GRACE_SECONDS, run, serve_until_signalled
from metrics_ingest.store import StorageError, open_store

log = logging.getLogger("metrics_ingest.supervisor")

RESTART_DELAY_SECONDS = 1.0
LONGEST_RESTART_DELAY_SECONDS = 30.0  # (doubling from RESTART_DELAY_SECONDS per early exit)
EARLY_EXIT_SECONDS = 10.0  # a worker that dies this soon after starting failed to start
EARLY_EXITS_ALLOWED = 3  # in a row, with no other worker serving, before the supervisor gives up


def worker_main(settings: Settings, index: int, sockets: list[socket.socket],
                notify: str | None = None, supervisor: int | None = None,
                telemetry_dir: Path | None = None) -> None:
    """A worker process: one server on `sockets` (listeners.py); it tells the supervisor's
    relay at `notify` when it serves, and keeps its counts for the others in
    `telemetry_dir` (worker_telemetry.py)."""
    configure_logging(settings.log_format, settings.log_level)
    # The supervisor's PID as it gave it: os.getppid() would be init's if it died before
    # this line ran, and the worker would then watch init forever.
    threading.Thread(target=stop_with_supervisor, args=(supervisor or os.getppid(),),
                     daemon=True,
                     name="stop-with-supervisor").start()
    notifier = Notifier(notify, {"WORKER": str(index)})
    try:
        run(serve_until_signalled(settings, worker=index, notifier=notifier, sockets=sockets,
                                  telemetry_dir=telemetry_dir))
    except StorageError as exc:  # (the database unreachable as it starts, say): one line
        log.error("worker %d stopped: %s", index, exc)
        raise SystemExit(1) from None


def stop_with_supervisor(supervisor: int) -> None:
    """In a worker: once the supervisor is gone (SIGKILLed), stop as on SIGTERM, draining
    what is queued, rather than serve on unwatched beside the next supervisor's workers."""
    wait_for_exit(supervisor)
    log.warning("the supervisor (PID %d) is gone: stopping", supervisor)
    os.kill(os.getpid(), signal.SIGTERM)


class Supervisor:
    def __init__(self, settings: Settings, notifier: Notifier | None = None,
                 telemetry_dir: Path | None = None) -> None:
        self.settings = settings
        self.telemetry_dir = telemetry_dir
        # Under systemd this process is the main PID: it says READY=1 once every worker does.
        self.notifier = notifier or Notifier(None)
        self.relay = None if self.notifier.address is None else ReadinessRelay(
            self.notifier, settings.workers,
            f"{settings.workers} workers listening on {settings.host}:{settings.port}")
        self.context = multiprocessing.get_context("spawn")
        self.workers: dict[int, BaseProcess] = {}
        self.exited: set[int] = set()  # workers whose exit was said, not yet started again
        self.started: dict[int, float] = {}
        self.early_exits = 0
        self.gave_up = False
        self.stopping = False

    def start(self, index: int, sockets: list[socket.socket] | None = None) -> None:
        """Worker `index` on `sockets`, or on sockets bound now (a restart: the worker
        listens on them once it serves, listeners.py); this process' copies are closed once
        the worker holds its own."""
        notify = None if self.relay is None else self.relay.address
        sockets = sockets or bind_listeners(self.settings.host, self.settings.port,
                                            listen=False)
        process = self.context.Process(target=worker_main,
                                       args=(self.settings, index, sockets, notify, os.getpid(),
                                             self.telemetry_dir),
                                       name=f"metrics-ingest-worker-{index}")
        try:
            process.start()
        finally:
            for sock in sockets:
                sock.close()
        self.workers[index] = process
        self.started[index] = time.monotonic()
        self.exited.discard(index)

    def stop(self, signum: int, _frame: FrameType | None) -> None:
        if not self.stopping:
            log.info("signal received: stopping %d workers", len(self.workers))
            self.notifier.stopping(f"stopping {len(self.workers)} workers")
        self.stopping = True
        for process in self.workers.values():
            if process.is_alive() and process.pid is not None:
                process.terminate()  # SIGTERM: each drains its queue, then exits

    def reload(self, signum: int, _frame: FrameType | None) -> None:
        """SIGHUP: each worker reads its tokens file and certificate again."""
        log.info("SIGHUP: telling %d workers to reload", len(self.workers))
        for process in self.workers.values():
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGHUP)

    def pause(self, seconds: float) -> None:
        """Sleep up to `seconds`, ended early by a stop (a signal handler sets `stopping`)."""
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    def watch(self) -> int:
        """Until stopped: restart workers that die (a worker that keeps failing to start
        waits longer each time while the others serve; with none serving, the supervisor
        gives up). Then wait for all; the exit code."""
        while not self.stopping:
            alive = {process.sentinel: index for index, process in self.workers.items()
                     if index not in self.exited}
            for sentinel in multiprocessing.connection.wait(list(alive), timeout=0.5):
                index = alive[sentinel]  # type: ignore[index]  # a sentinel is an int
                if self.stopping:
                    break
                self.workers[index].join(5)  # (reaped: its exit code is known)
                code = self.workers[index].exitcode
                self.exited.add(index)
                early = time.monotonic() - self.started[index] < EARLY_EXIT_SECONDS
                self.early_exits = self.early_exits + 1 if early else 0
                serving = any(process.is_alive() for other, process in self.workers.items()
                              if other != index)
                if self.early_exits >= EARLY_EXITS_ALLOWED and not serving:
                    log.error("worker %d exited (code %s) %d times right after starting; "
                              "stopping", index, code, self.early_exits)
                    self.gave_up = True
                    self.stop(signal.SIGTERM, None)
                    break
                delay = min(RESTART_DELAY_SECONDS * 2 ** max(0, self.early_exits - 1),
                            LONGEST_RESTART_DELAY_SECONDS)
                log.error("worker %d exited (code %s); starting it again in %.0f s", index,
                          code, delay)
                self.pause(delay)
                if not self.stopping:
                    try:
                        self.start(index)
                    except OSError as exc:  # its port taken meanwhile: nothing to serve on
                        log.error("worker %d cannot listen again: %s; stopping", index, exc)
                        self.gave_up = True
                        self.stop(signal.SIGTERM, None)
                        break
        return 1 if self.stopped_badly() or self.gave_up else 0

    def stopped_badly(self) -> int:
        """Wait for every worker; how many ended badly. A worker whose exit was already said
        (stopped while waiting to start again) is not counted twice, nor one that a stop's
        SIGTERM ended before it could drain (it had not started serving)."""
        failed = 0
        deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
        for index, process in self.workers.items():
            if index in self.exited:
                continue
            process.join(max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                log.error("worker %d did not stop within %.0f s; killed", index,
                          SHUTDOWN_GRACE_SECONDS)
                process.kill()
                process.join(5)
            failed += process.exitcode not in (0, -signal.SIGTERM)
        return failed


def serve_workers(settings: Settings, notifier: Notifier | None = None) -> int:
    store = open_store(settings.database)
    store.claim()
    counts = None
    try:
        # Every worker's counts, so that any one shows the service's (worker_telemetry.py).
        counts = CountsDirectory.make()
        applied = store.migrate()
        if applied:
            log.info("database %s: applied migrations %s", store.location, ", ".join(applied))
        # Every worker's sockets listen before the first worker starts (listeners.py).
        first = bind_listeners(settings.host, settings.port)
        port = bound_port(first[0])
        ahead = [first] + [bind_listeners(settings.host, port)
                           for _ in range(settings.workers - 1)]
        supervisor = Supervisor(settings.replace(port=port), notifier,
                                None if counts is None else counts.path)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, supervisor.stop)
        signal.signal(signal.SIGHUP, supervisor.reload)
        for index, sockets in enumerate(ahead, start=1):
            supervisor.start(index, sockets)
        log.info("started %d workers on http://%s:%d", settings.workers, settings.host, port)
        code = supervisor.watch()
        if supervisor.relay is not None:
            supervisor.relay.close()
        log.info("stopped: every worker exited%s", "" if code == 0 else ", one or more failed")
        return code
    finally:
        if counts is not None:
            counts.remove()
        store.release()
