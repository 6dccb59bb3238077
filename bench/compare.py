"""Side-by-side comparison of metrics-ingest with its peers, workloads W1-W7 (see README).

Run through `bench/compare` (which prepares the venv); `--quick` is a seconds-long smoke.
Each result is appended as a JSON line to bench/results/, then RESULTS.md and the plot are
regenerated from all lines of the newest run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import encode, loadgen, raw_sqlite, report, seed, systems
from bench.systems import TOKEN, Running

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
PEER_PACKAGES = {"wrk": "wrk", "prometheus-pushgateway": "prometheus-pushgateway",
                 "victoria-metrics": "victoria-metrics"}


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
        row = {"run": self.run_id, "workload": workload, "system": system, "metric": metric,
               "value": round(value, 3), **details}
        self.results.append(row)
        print(f"  {workload:3} {system:22} {metric:28} {value:>14,.2f}", flush=True)

    def dir(self, name: str) -> Path:
        path = self.root / name
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path

    def wants(self, workload: str) -> bool:
        return not self.only or workload in self.only


# -- helpers --------------------------------------------------------------------------------

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
    import sqlite3

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
    import asyncio

    from bench import workloads

    builder = workloads.python_builder(script, args)
    return asyncio.run(loadgen.python_load(target.url, builder, connections, duration))


def median_load(plan: Plan, target: Running, script: str, make_args: Callable[[int], list[str]],
                connections: int) -> tuple[loadgen.LoadResult, list[loadgen.LoadResult]]:
    runs = [load(plan, target, script, make_args(i), connections) for i in range(plan.repeat)]
    runs_sorted = sorted(runs, key=lambda r: r.rps)
    return runs_sorted[(len(runs_sorted) - 1) // 2], runs


def ts_base(run: int) -> str:
    """Each repetition writes its own range of timestamps (one second per request, ranges 15
    days apart, starting 60 days back), so no sample replaces another and row counts add up."""
    return str(int(time.time()) - 60 * 86400 + run * 15 * 86400)


# -- workloads ------------------------------------------------------------------------------

def w1(plan: Plan, peers_ok: bool) -> None:
    """Small pushes, the Worker's shape, 64 connections."""
    print("W1 small pushes, 64 connections", flush=True)
    mi = systems.metrics_ingest(plan.dir("w1-mi"))
    try:
        before = metric_total(scrape(mi.url), "metrics_ingest_samples_received_total")
        best, runs = median_load(plan, mi, "ingest_small.lua", lambda i: [TOKEN, ts_base(i)], 64)
        committed = metric_total(scrape(mi.url), "metrics_ingest_samples_received_total") - before
        acked = 2 * sum(r.requests - r.non_2xx for r in runs)
        plan.record("W1", "metrics-ingest", "req_per_s", best.rps, **best.as_dict(),
                    samples_committed=committed, samples_acked_by_wrk=acked,
                    rows_in_db=sqlite_count(mi.extra["db"]), runs=[r.rps for r in runs])
        plan.record("W1", "metrics-ingest", "p99_ms", best.p99_ms)
        plan.record("W7", "metrics-ingest", "peak_rss_mb_w1", mi.peak_rss_mb())
    finally:
        mi.stop()
    bare = systems.bare_aiohttp(plan.dir("w1-bare"))
    try:
        best, runs = median_load(plan, bare, "ingest_small.lua", lambda i: [TOKEN, ts_base(i)],
                                 64)
        plan.record("W1", "bare-aiohttp", "req_per_s", best.rps, **best.as_dict(),
                    runs=[r.rps for r in runs])
    finally:
        bare.stop()
    if not peers_ok:
        return
    for check in (True, False):
        pgw = systems.pushgateway(plan.dir("w1-pgw"), consistency_check=check)
        try:
            best, runs = median_load(plan, pgw, "pgw_small.lua", lambda i: ["hpc"], 64)
            pushes = metric_total(scrape(pgw.url), "pushgateway_http_requests_total",
                                  code="200", handler="push")
            plan.record("W1", pgw.name, "req_per_s", best.rps, **best.as_dict(),
                        pushes_counted=pushes, runs=[r.rps for r in runs])
        finally:
            pgw.stop()


def w2(plan: Plan, peers_ok: bool) -> None:
    """W1 with 10,000 distinct series already stored and fresh."""
    n = 1000 if plan.quick else 10_000
    print(f"W2 small pushes with {n} series stored", flush=True)
    mi = systems.metrics_ingest(plan.dir("w2-mi"))
    try:
        seed.seed_metrics_ingest(mi.url, TOKEN, n)
        best, runs = median_load(plan, mi, "ingest_small.lua", lambda i: [TOKEN, ts_base(i)], 64)
        plan.record("W2", "metrics-ingest", "req_per_s", best.rps, **best.as_dict(),
                    series_stored=n, runs=[r.rps for r in runs])
    finally:
        mi.stop()
    if not peers_ok:
        return
    for check in (True, False):
        pgw = systems.pushgateway(plan.dir("w2-pgw"), consistency_check=check)
        try:
            seed.seed_pushgateway(pgw.url, n)
            best, runs = median_load(plan, pgw, "pgw_small.lua", lambda i: ["hpc"], 64)
            plan.record("W2", pgw.name, "req_per_s", best.rps, **best.as_dict(),
                        series_stored=n, runs=[r.rps for r in runs])
        finally:
            pgw.stop()


def w3(plan: Plan, peers_ok: bool) -> None:
    """Bulk pushes of 1,000 samples, 16 connections; plus W7's bytes/sample and RSS."""
    print("W3 bulk pushes (1,000 samples each), 16 connections", flush=True)
    mi = systems.metrics_ingest(plan.dir("w3-mi"))
    try:
        before = metric_total(scrape(mi.url), "metrics_ingest_samples_received_total")
        started = time.monotonic()
        best, runs = median_load(plan, mi, "ingest_bulk.lua", lambda i: [TOKEN, ts_base(i)], 16)
        committed = metric_total(scrape(mi.url), "metrics_ingest_samples_received_total") - before
        plan.record("W3", "metrics-ingest", "samples_per_s", best.rps * 1000, **best.as_dict(),
                    samples_committed=committed, wall_s=round(time.monotonic() - started, 1),
                    runs=[r.rps * 1000 for r in runs])
        plan.record("W7", "metrics-ingest", "peak_rss_mb_w3", mi.peak_rss_mb())
    finally:
        mi.stop()
    db = Path(mi.extra["db"])
    rows = sqlite_count(str(db))
    plan.record("W7", "metrics-ingest", "bytes_per_sample", db.stat().st_size / rows,
                rows=rows, db_bytes=db.stat().st_size)

    raw_rows = 200_000 if plan.quick else 2_000_000
    for with_latest in (True, False):
        raw = raw_sqlite.raw_insert_rate(plan.dir("w3-raw") / "raw.db", raw_rows,
                                         with_latest=with_latest)
        name = "raw-sqlite" if with_latest else "raw-sqlite-samples-only"
        plan.record("W3", name, "samples_per_s", raw["rows_per_s"], rows=raw["rows"])

    bare = systems.bare_aiohttp(plan.dir("w3-bare"))
    try:
        best, runs = median_load(plan, bare, "ingest_bulk.lua", lambda i: [TOKEN, ts_base(i)], 16)
        plan.record("W3", "bare-aiohttp", "samples_per_s", best.rps * 1000, **best.as_dict(),
                    runs=[r.rps * 1000 for r in runs])
    finally:
        bare.stop()
    if not peers_ok:
        return
    pgw = systems.pushgateway(plan.dir("w3-pgw"))
    try:
        best, runs = median_load(plan, pgw, "pgw_bulk.lua", lambda i: [], 16)
        plan.record("W3", "pushgateway", "samples_per_s", best.rps * 1000, **best.as_dict(),
                    runs=[r.rps * 1000 for r in runs])
    finally:
        pgw.stop()
    vm = systems.victoria_metrics(plan.dir("w3-vm"))
    try:
        best, runs = median_load(plan, vm, "vm_bulk.lua", lambda i: [ts_base(i)], 16)
        systems.http_get(vm.url + "/internal/force_flush")
        inserted = metric_total(scrape(vm.url), "vm_rows_inserted_total")
        plan.record("W3", "victoriametrics", "samples_per_s", best.rps * 1000, **best.as_dict(),
                    rows_counted=inserted, runs=[r.rps * 1000 for r in runs])
    finally:
        vm.stop()


def w4(plan: Plan, peers_ok: bool) -> None:
    """Scrape /metrics with 10k and 100k fresh series, median of 20."""
    sizes = (1000, 10_000) if plan.quick else (10_000, 100_000)
    count = 5 if plan.quick else 20
    print(f"W4 scrape with {sizes} fresh series, median of {count}", flush=True)
    for n in sizes:
        mi = systems.metrics_ingest(plan.dir(f"w4-mi-{n}"))
        try:
            seed.seed_metrics_ingest(mi.url, TOKEN, n)
            body = scrape(mi.url)
            exported = sum(1 for line in body.splitlines() if line.startswith("seed_metric_"))
            times = timed_gets(mi.url + "/metrics", count)
            plan.record("W4", "metrics-ingest", f"scrape_ms_{n}", 1000 * statistics.median(times),
                        series_exported=exported, body_bytes=len(body))
            gz = timed_gets(mi.url + "/metrics", count, {"Accept-Encoding": "gzip"})
            plan.record("W4", "metrics-ingest", f"scrape_gzip_ms_{n}",
                        1000 * statistics.median(gz))
            # The same scrape when a push landed since the last one (the body is re-rendered).
            rerender = []
            for i in range(count):
                seed.push_one(mi.url, TOKEN, i)
                rerender += timed_gets(mi.url + "/metrics", 1)
            plan.record("W4", "metrics-ingest", f"scrape_after_push_ms_{n}",
                        1000 * statistics.median(rerender))
        finally:
            mi.stop()
    if not peers_ok:
        return
    n = sizes[0]
    pgw = systems.pushgateway(plan.dir("w4-pgw"))
    try:
        seed.seed_pushgateway(pgw.url, n)
        body = scrape(pgw.url)
        exported = sum(1 for line in body.splitlines() if line.startswith("seed_metric_"))
        times = timed_gets(pgw.url + "/metrics", count)
        plan.record("W4", "pushgateway", f"scrape_ms_{n}", 1000 * statistics.median(times),
                    series_exported=exported, body_bytes=len(body))
    finally:
        pgw.stop()


def w5(plan: Plan, peers_ok: bool) -> None:
    """The JSON API over 10 million samples (7 days of the HPC pattern + synthetic series)."""
    total = 200_000 if plan.quick else 10_000_000
    count = 5 if plan.quick else 20
    print(f"W5 JSON API over {total:,} samples, median of {count}", flush=True)
    workdir = plan.dir("w5")
    db = workdir / "metrics.db"
    now = int(time.time())
    started = time.monotonic()
    written = seed.build_history(db, total, now - 7 * 86400 + 120, now)
    print(f"  built {written:,} samples in {time.monotonic() - started:.0f} s", flush=True)
    mi = systems.metrics_ingest(workdir, db_path=db)
    try:
        body = systems.http_get(mi.url + "/api/metrics?window=1h&limit=10000")
        returned = len(json.loads(body))
        times = timed_gets(mi.url + "/api/metrics?window=1h&limit=10000", count)
        plan.record("W5", "metrics-ingest", "api_metrics_ms", 1000 * statistics.median(times),
                    samples_in_db=written, rows_returned=returned, body_bytes=len(body))
        times = timed_gets(mi.url + "/api/sources", count)
        plan.record("W5", "metrics-ingest", "api_sources_ms", 1000 * statistics.median(times),
                    sources=json.loads(systems.http_get(mi.url + "/api/sources")))
    finally:
        mi.stop()


def w6(plan: Plan, peers_ok: bool) -> None:
    """W1 while the scheduled purge deletes >= 1 million expired samples (median of repeats,
    each over a freshly seeded database)."""
    expired = 50_000 if plan.quick else 1_200_000
    print(f"W6 small pushes during a purge of {expired:,} expired samples", flush=True)
    runs = [w6_once(plan, expired, i) for i in range(plan.repeat)]
    # The upper median: with two runs, the worse one.
    result, purged, purge_line = sorted(runs, key=lambda run: run[0].p99_ms)[len(runs) // 2]
    errors = sum(run.non_2xx + run.socket_errors for run, _, _ in runs)
    plan.record("W6", "metrics-ingest", "p99_ms_during_purge", result.p99_ms,
                **result.as_dict(), purged=purged, expired_seeded=expired,
                errors=errors, runs=[run.p99_ms for run, _, _ in runs])
    plan.record("W6", "metrics-ingest", "errors_during_purge", errors)
    if purge_line:
        print("  " + purge_line, flush=True)


def w6_once(plan: Plan, expired: int, run: int) -> tuple[loadgen.LoadResult, float, str]:
    workdir = plan.dir(f"w6-{run}")
    db = workdir / "metrics.db"
    now = int(time.time())
    seed.build_history(db, expired, now - 9 * 86400, now - 8 * 86400)
    # A cron spec with seconds (cronsim's 6-field form): fire 2 s into the load run.
    fire = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=6)
    spec = f"{fire.second} {fire.minute} {fire.hour} * * *"
    mi = systems.metrics_ingest(workdir, db_path=db, env={"METRICS_PURGE_CRON": spec})
    try:
        wait = (fire - dt.datetime.now(dt.UTC)).total_seconds() - 2
        if wait > 0:
            time.sleep(wait)  # align the load run with the scheduled purge (benchmark, not test)
        seconds = max(plan.seconds, 6.0)
        result = load(plan, mi, "ingest_small.lua", [TOKEN, ts_base(0)], 64, seconds)
        purged = metric_total(scrape(mi.url), "metrics_ingest_purged_samples_total")
        purge_lines = [line for line in mi.log.read_text().splitlines() if "purge:" in line]
        return result, purged, purge_lines[-1] if purge_lines else ""
    finally:
        mi.stop()


def w8(plan: Plan, peers_ok: bool) -> None:
    """The formats HPC sites already send, 1,000 samples per request, 16 connections:
    Influx line protocol, remote_write and Pushgateway text, against the peer that speaks it."""
    print("W8 formats: 1,000-sample Influx, remote_write and Pushgateway pushes", flush=True)
    bodies = plan.dir("w8-bodies")
    count = 20 if plan.quick else 300
    base = int(time.time()) - 30 * 86400
    for kind in ("influx", "remote_write", "pushgateway"):
        encode.write_bodies(bodies / kind, kind, count, base)
    bearer = f"Bearer {TOKEN}"
    runs: list[tuple[str, Callable[[Path], Running], str, str, str, str, str | None]] = [
        ("influx", systems.metrics_ingest, "POST", "/api/v2/write?bucket=bulk&precision=s",
         bearer, "text/plain", None),
        ("remote_write", systems.metrics_ingest, "POST", "/api/v1/write", bearer,
         "application/x-protobuf", "snappy"),
        ("pushgateway", systems.metrics_ingest, "PUT", "/metrics/job/bulk", bearer,
         "text/plain", None),
    ]
    if peers_ok:
        runs += [
            ("influx", systems.victoria_metrics, "POST", "/write?precision=s", "-",
             "text/plain", None),
            ("remote_write", systems.victoria_metrics, "POST", "/api/v1/write", "-",
             "application/x-protobuf", "snappy"),
            ("pushgateway", systems.pushgateway, "PUT", "/metrics/job/bulk", "-", "text/plain",
             None),
        ]
    for kind, start, method, path, auth, content_type, encoding in runs:
        target = start(plan.dir(f"w8-{kind}-{start.__name__}"))
        try:
            args = [method, path, str(bodies / kind), str(count), auth, content_type]
            if encoding:
                args.append(encoding)
            best, all_runs = median_load(plan, target, "files.lua", lambda i, a=args: a, 16)
            extra: dict[str, Any] = {}
            if target.name == "metrics-ingest":
                extra["samples_committed"] = metric_total(
                    scrape(target.url), "metrics_ingest_samples_received_total")
            plan.record("W8", target.name, f"{kind}_samples_per_s", best.rps * 1000,
                        **best.as_dict(), **extra, runs=[r.rps * 1000 for r in all_runs])
        finally:
            target.stop()


WORKLOADS: dict[str, Callable[[Plan, bool], None]] = {
    "W1": w1, "W2": w2, "W3": w3, "W4": w4, "W5": w5, "W6": w6, "W8": w8,
}


def git_sha() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=BENCH, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    parser.add_argument("--seconds", type=float, help="load duration per run (default 10)")
    parser.add_argument("--repeat", type=int, help="runs per measurement (median; default 3)")
    parser.add_argument("--only", default="", help="comma-separated workloads, e.g. W1,W3")
    parser.add_argument("--no-save", action="store_true",
                        help="do not append to bench/results/ or rewrite RESULTS.md")
    args = parser.parse_args()
    missing = ensure_peers()
    if missing:
        print(f"peers unavailable (not installed): {', '.join(missing)}; measuring "
              "metrics-ingest alone", flush=True)
    run_id = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    with tempfile.TemporaryDirectory(prefix="mi-bench-") as tmp:
        plan = Plan(quick=args.quick, seconds=args.seconds or (1.0 if args.quick else 10.0),
                    repeat=args.repeat or (1 if args.quick else 3), root=Path(tmp),
                    run_id=run_id, only={w.strip().upper() for w in args.only.split(",") if w})
        meta = {"run": run_id, "git": git_sha(), "quick": plan.quick, "seconds": plan.seconds,
                "repeat": plan.repeat, "python": platform.python_version(),
                "cpus": os.cpu_count(), "generator": "wrk" if loadgen.wrk_available()
                else "python-aiohttp", "peers_missing": missing}
        print(json.dumps(meta), flush=True)
        peers_ok = not missing
        for name, workload in WORKLOADS.items():
            if plan.wants(name):
                workload(plan, peers_ok)
    if args.no_save:
        return 0
    RESULTS.mkdir(exist_ok=True)
    target = RESULTS / ("quick.jsonl" if plan.quick else f"{run_id[:8]}.jsonl")
    with target.open("a") as out:
        out.write(json.dumps({"meta": meta}) + "\n")
        for row in plan.results:
            out.write(json.dumps(row) + "\n")
    if not plan.quick:
        report.write(RESULTS, BENCH / "RESULTS.md", BENCH / "results.png")
    print(f"results appended to {target.relative_to(BENCH.parent)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
