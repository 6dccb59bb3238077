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
import tempfile
import threading
import time
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType

from metrics_ingest.auth import AuthPolicy
from metrics_ingest.config import Settings
from metrics_ingest.counts_directory import CountsDirectory
from metrics_ingest.listeners import bind_listeners, bound_port
from metrics_ingest.logs import configure_logging
from metrics_ingest.parsing import holds_sockets
from metrics_ingest.processes import wait_for_exit
from metrics_ingest.sdnotify import Notifier, ReadinessRelay
from metrics_ingest.serve import SHUTDOWN_GRACE_SECONDS, run, serve_until_signalled
from metrics_ingest.store import StorageError, open_store
from metrics_ingest.tls import Certificates

log = logging.getLogger("metrics_ingest.supervisor")

RESTART_DELAY_SECONDS = 1.0
LONGEST_RESTART_DELAY_SECONDS = 30.0  # (doubling from RESTART_DELAY_SECONDS per early exit)
EARLY_EXIT_SECONDS = 10.0  # a worker that dies this soon after starting failed to start
EARLY_EXITS_ALLOWED = 3  # of one worker in a row, none other serving: the supervisor gives up


def worker_main(settings: Settings, index: int, sockets: list[socket.socket],
                notify: str | None = None, supervisor: int | None = None,
                telemetry_dir: Path | None = None) -> None:
    """A worker process: one server on `sockets` (listeners.py); it tells the supervisor's
    relay at `notify` when it serves, and keeps its counts for the others in
    `telemetry_dir` (worker_telemetry.py)."""
    # Started with SIGHUP blocked (Supervisor.start): ignored until the server's own
    # handler takes over, so a reload asked for while this worker starts cannot kill it.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
    configure_logging(settings.log_format, settings.log_level)
    if telemetry_dir is not None and holds_sockets(str(telemetry_dir)):
        # This worker's temporary files (its forkserver's) go with the supervisor's
        # directory, so the supervisor removes them even when this worker is SIGKILLed.
        tempfile.tempdir = str(telemetry_dir)
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
        self.due: dict[int, float] = {}  # of those, when each is started again (monotonic)
        self.started: dict[int, float] = {}
        self.failing: dict[int, int] = {}  # worker -> its exits in a row right after starting
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
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})  # (worker_main)
        try:
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
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

    def watch(self) -> int:
        """Until stopped: restart workers that die, each on its own schedule (a worker that
        keeps failing to start waits longer each time while the others serve and are
        restarted as they die; with none serving, the supervisor gives up). Then wait for
        all; the exit code."""
        while not self.stopping:
            self.start_due()
            alive = {process.sentinel: index for index, process in self.workers.items()
                     if index not in self.exited}
            now = time.monotonic()
            timeout = min([0.5, *(max(0.0, at - now) for at in self.due.values())])
            for sentinel in multiprocessing.connection.wait(list(alive), timeout=timeout):
                if self.stopping:
                    break
                self.ended(alive[sentinel])  # type: ignore[index]  # a sentinel is an int
        return 1 if self.stopped_badly() or self.gave_up else 0

    def ended(self, index: int) -> None:
        """Worker `index` exited: schedule its restart, or give up."""
        self.workers[index].join(5)  # (reaped: its exit code is known)
        code = self.workers[index].exitcode
        now = time.monotonic()
        self.exited.add(index)
        early = now - self.started[index] < EARLY_EXIT_SECONDS
        failing = self.failing[index] = self.failing.get(index, 0) + 1 if early else 0
        # Serving: alive, in a life that followed no failed start or has outlived one (one
        # that failed to start, trying again, may be about to fail the same way).
        serving = any(process.is_alive() and (not self.failing.get(other, 0)
                                              or now - self.started[other] >= EARLY_EXIT_SECONDS)
                      for other, process in self.workers.items() if other != index)
        if failing >= EARLY_EXITS_ALLOWED and not serving:
            log.error("worker %d exited (code %s) %d times right after starting; stopping",
                      index, code, failing)
            self.gave_up = True
            self.stop(signal.SIGTERM, None)
            return
        delay = min(RESTART_DELAY_SECONDS * 2 ** max(0, failing - 1),
                    LONGEST_RESTART_DELAY_SECONDS)
        log.error("worker %d exited (code %s); starting it again in %.0f s", index, code,
                  delay)
        self.due[index] = now + delay

    def start_due(self) -> None:
        now = time.monotonic()
        for index, at in sorted(self.due.items()):
            if at > now or self.stopping:
                continue
            del self.due[index]
            try:
                self.start(index)
            except OSError as exc:  # its port taken meanwhile: nothing to serve on
                log.error("worker %d cannot listen again: %s; stopping", index, exc)
                self.gave_up = True
                self.stop(signal.SIGTERM, None)
                return

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


def check_files(settings: Settings) -> None:
    """What every worker would fail to start on, said once here (ValueError or OSError, one
    line from the CLI): the tokens file and the TLS certificate, read as a worker reads
    them."""
    AuthPolicy(settings.auth_tokens, settings.read_token, settings.admin_token,
               settings.tokens_file)
    if settings.tls_cert is not None and settings.tls_key is not None:
        Certificates(settings.tls_cert, settings.tls_key)


def serve_workers(settings: Settings, notifier: Notifier | None = None) -> int:
    # A reload asked for before the handler below is set waits for it, rather than kill.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    check_files(settings)
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
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
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
