"""What every bench/compare workload shares: the run plan and its records, and the load
helpers. A peer's figure must measure the peer, not what an earlier run left in it: every run
gets a freshly started system over a fresh data directory, and each figure is recorded with
all of its runs (the median is the figure; the report also shows the spread and calls a bar
met only when its worst run meets it)."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import loadgen, systems
from bench.systems import Running

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
PEER_PACKAGES = {"wrk": "wrk", "prometheus-pushgateway": "prometheus-pushgateway",
                 "victoria-metrics": "victoria-metrics", "prometheus": "prometheus"}


@dataclass
class Plan:
    quick: bool
    seconds: float
    repeat: int
    root: Path
    run_id: str
    only: set[str]
    results: list[dict[str, Any]] = field(default_factory=list)

    def record(self, workload: str, system: str, metric: str, value: float,
               **details: Any) -> None:
        """One figure; `runs` (every run's value) gives its spread in the report."""
        runs = details.get("runs")
        if runs:
            details["low"], details["high"] = round(min(runs), 3), round(max(runs), 3)
        row = {"run": self.run_id, "workload": workload, "system": system, "metric": metric,
               "value": round(value, 3), **details}
        self.results.append(row)
        spread = (f"  [{details['low']:,.2f} .. {details['high']:,.2f}]" if runs else "")
        print(f"  {workload:3} {system:22} {metric:28} {value:>14,.2f}{spread}", flush=True)

    def dir(self, name: str) -> Path:
        path = self.root / name
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path

    def wants(self, workload: str) -> bool:
        return not self.only or workload in self.only


def ensure_peers() -> list[str]:
    """Install missing Debian packages (as root, with apt-get); returns what is still missing."""
    missing = [pkg for binary, pkg in PEER_PACKAGES.items() if shutil.which(binary) is None]
    if missing and shutil.which("apt-get") and os.geteuid() == 0:
        print(f"installing {' '.join(missing)} with apt-get", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=False, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
                       check=False, timeout=900, stdout=subprocess.DEVNULL)
    return [pkg for binary, pkg in PEER_PACKAGES.items() if shutil.which(binary) is None]


def scrape(url: str, path: str = "/metrics") -> str:
    return systems.http_get(url + path).decode()


def metric_total(text: str, name: str, **labels: str) -> float:
    """Sum of a family's samples in exposition text whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, rest = line.partition(" ")
        if head.split("{")[0] != name:
            continue
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(rest.split()[0])
    return total


def sqlite_count(db_path: str, sql: str = "SELECT count(*) FROM samples") -> int:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


def timed_gets(url: str, count: int, headers: dict[str, str] | None = None) -> list[float]:
    """`count` sequential GETs; seconds each (the body is read whole)."""
    times = []
    for _ in range(count):
        started = time.perf_counter()
        systems.http_get(url, headers=headers)
        times.append(time.perf_counter() - started)
    return times


def load(plan: Plan, target: Running, script: str, args: list[str], connections: int,
         seconds: float | None = None) -> loadgen.LoadResult:
    duration = seconds or plan.seconds
    if loadgen.wrk_available():
        return loadgen.run_wrk(target.url, script, args, connections, duration)
    from bench import workloads

    builder = workloads.python_builder(script, args)
    return asyncio.run(loadgen.python_load(target.url, builder, connections, duration))


@dataclass
class Runs:
    """Every run of one measurement: its load results and what was read off each system."""

    results: list[loadgen.LoadResult]
    extras: list[dict[str, Any]]

    @property
    def median(self) -> tuple[loadgen.LoadResult, dict[str, Any]]:
        order = sorted(range(len(self.results)), key=lambda i: self.results[i].rps)
        middle = order[(len(order) - 1) // 2]
        return self.results[middle], self.extras[middle]

    def values(self, scale: float = 1.0) -> list[float]:
        return [result.rps * scale for result in self.results]


def fresh_runs(plan: Plan, name: str, start: Callable[[Path], Running], script: str,
               make_args: Callable[[int], list[str]], connections: int,
               after: Callable[[Running, loadgen.LoadResult], dict[str, Any]] | None = None,
               prepare: Callable[[Running], None] | None = None) -> Runs:
    """`plan.repeat` load runs, each against a system started afresh for it (`prepare` seeds
    it, `after` reads what the run left)."""
    results, extras = [], []
    for run in range(plan.repeat):
        target = start(plan.dir(f"{name}-{run}"))
        try:
            if prepare is not None:
                prepare(target)
            result = load(plan, target, script, make_args(run), connections)
            results.append(result)
            extras.append(after(target, result) if after is not None else {})
        finally:
            target.stop()
    return Runs(results, extras)


def ts_base(run: int) -> str:
    """Each repetition writes its own range of timestamps (one second per request, ranges 15
    days apart, starting 60 days back), so no sample replaces another and row counts add up."""
    return str(int(time.time()) - 60 * 86400 + run * 15 * 86400)


def git_sha() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=BENCH, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def median(values: list[float]) -> float:
    return statistics.median(values)


def cpus() -> int:
    return os.cpu_count() or 1
