"""Starting and stopping the systems under test on loopback, each over a fresh data directory."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TOKEN = "bench-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_get(url: str, timeout: float = 30.0, headers: dict[str, str] | None = None) -> bytes:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body: bytes = response.read()
        return body


def wait_ready(url: str, process: subprocess.Popen[bytes], seconds: float, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: process exited early; log:\n{log.read_text()[-2000:]}")
        try:
            http_get(url, timeout=2)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} not ready after {seconds} s") from None
            time.sleep(0.05)


@dataclass
class Running:
    """A started system: its base URL, process and the files it owns."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    workdir: Path
    log: Path
    extra: dict[str, str] = field(default_factory=dict)
    cleanup: list[Callable[[], object]] = field(default_factory=list)  # after the process

    def peak_rss_mb(self) -> float:
        """VmHWM: the process' peak resident set size so far."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def stop(self, seconds: float = 15.0) -> int:
        """SIGTERM, then SIGKILL after `seconds`, then the cleanups; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(seconds)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        while self.cleanup:
            self.cleanup.pop()()
        return self.process.returncode


def start(name: str, command: list[str], ready_path: str, port: int, workdir: Path,
          env: dict[str, str] | None = None) -> Running:
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=workdir, stdout=out, stderr=subprocess.STDOUT,
                                   env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    running = Running(name, url, process, workdir, log)
    try:
        wait_ready(url + ready_path, process, 60, log)
    except BaseException:
        running.stop()
        raise
    return running


def metrics_ingest(workdir: Path, db_path: Path | None = None,
                   env: dict[str, str] | None = None) -> Running:
    port = free_port()
    db = db_path or workdir / "metrics.db"
    command = [sys.executable, "-m", "metrics_ingest", "serve", "--port", str(port)]
    if "METRICS_DB_PATH" not in (env or {}):
        command += ["--db", str(db)]
    # Series budgets above what any workload creates (W4 seeds 100,000 series into one
    # source, the default budget): the budget's code runs either way, only its limit moves.
    budgets = {"METRICS_MAX_SERIES_PER_SOURCE": "10000000", "METRICS_MAX_SERIES": "10000000"}
    running = start("metrics-ingest", command, "/healthz", port, workdir,
                    {"METRICS_AUTH_TOKEN": TOKEN, "PYTHONPATH": str(REPO), **budgets,
                     **(env or {})})
    running.extra["db"] = str(db)
    return running


def postgres(workdir: Path) -> tuple[Callable[[], object], str]:
    """A throwaway PostgreSQL cluster (tests/pg_cluster.py) with durable settings (fsync on)
    and an empty `metrics` database; returns (stop, URL)."""
    from tests.pg_cluster import start_cluster

    cluster = start_cluster({"max_wal_size": "4GB"})
    if cluster is None:
        raise RuntimeError("PostgreSQL is not installed (Debian package postgresql)")
    try:
        subprocess.run(["psql", cluster.url(), "-qc", "CREATE DATABASE metrics"], check=True,
                       capture_output=True, timeout=60)
    except BaseException:
        cluster.destroy()
        raise
    (workdir / "postgres-dir").write_text(str(cluster.directory))
    return cluster.destroy, cluster.url("metrics")


def metrics_ingest_postgres(workdir: Path, env: dict[str, str] | None = None) -> Running:
    """metrics-ingest over a PostgreSQL cluster of its own, stopped with it."""
    stop_cluster, url = postgres(workdir)
    try:
        running = metrics_ingest(workdir, env={"METRICS_DB_PATH": url, **(env or {})})
    except BaseException:
        stop_cluster()
        raise
    running.name = "metrics-ingest-postgres"
    running.extra["db_url"] = url
    running.cleanup.append(stop_cluster)
    return running


def bare_aiohttp(workdir: Path, processes: int = 1) -> Running:
    """Ready when each of its processes prints that it listens (it has no GET route to
    poll)."""
    port = free_port()
    command = [sys.executable, str(REPO / "bench" / "bare_aiohttp.py"), "--port", str(port),
               "--processes", str(processes)]
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "bare-aiohttp.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=workdir, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while log.read_text().count("listening") < processes:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"bare aiohttp did not start: {log.read_text()}")
        time.sleep(0.05)
    return Running("bare-aiohttp", f"http://127.0.0.1:{port}", process, workdir, log)


def pushgateway(workdir: Path, consistency_check: bool = True) -> Running:
    port = free_port()
    binary = shutil.which("prometheus-pushgateway") or "pushgateway"
    command = [binary, f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]
    if not consistency_check:
        command.append("--push.disable-consistency-check")
    name = "pushgateway" if consistency_check else "pushgateway-nocheck"
    return start(name, command, "/-/ready", port, workdir)


def victoria_metrics(workdir: Path) -> Running:
    port = free_port()
    binary = shutil.which("victoria-metrics") or "victoria-metrics-prod"
    command = [binary, f"-httpListenAddr=127.0.0.1:{port}",
               f"-storageDataPath={workdir / 'vm-data'}", "-retentionPeriod=1y",
               "-loggerLevel=WARN"]
    return start("victoriametrics", command, "/health", port, workdir)


def prometheus(workdir: Path, config: str = "global: {}\nscrape_configs: []\n",
               flags: tuple[str, ...] = ()) -> Running:
    """Prometheus (Debian's 2.42) over a fresh TSDB under `workdir`, with `config`."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "prometheus.yml").write_text(config)
    binary = shutil.which("prometheus") or "prometheus"
    command = [binary, f"--config.file={workdir / 'prometheus.yml'}",
               f"--storage.tsdb.path={workdir / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}",
               "--log.level=warn", *flags]
    return start("prometheus", command, "/-/ready", port, workdir)
