"""W10, cardinality: a million job-level series pushed in 10k-series JSON pushes, then what
that costs: RSS, the first and the steady /metrics (plain and gzip), /api/sources, and the
p99 of small pushes sent while the big scrape and a push of 100k new series run.

    .venv/bin/python -m bench.cardinality [--series 1000000] [--base REVISION]

With --base, the same workload also runs on that revision's code, in the same run, first.
bench/compare runs it as W10.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench import systems
from bench.ab import export_revision
from bench.systems import TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
METRICS_PER_JOB = 10


def job_push(first_job: int, jobs: int, stamp: int) -> bytes:
    """`jobs` objects, one per job (labels job_id, partition), 10 metrics each."""
    return orjson.dumps([
        {"source": "hpc", "timestamp": stamp,
         "labels": {"job_id": str(job), "partition": ("cpu", "gpu")[job % 2]},
         "metrics": {f"slurm_job_metric_{m}": float(job * 10 + m) for m in range(METRICS_PER_JOB)}}
        for job in range(first_job, first_job + jobs)])


def rss_mb(server: systems.Running) -> tuple[float, float]:
    """(current, peak) resident set size of the server process."""
    status = Path(f"/proc/{server.process.pid}/status").read_text().splitlines()
    values = {line.split(":")[0]: int(line.split()[1]) / 1024 for line in status
              if line.startswith(("VmRSS:", "VmHWM:"))}
    return values["VmRSS"], values["VmHWM"]


async def small_pushes(session: aiohttp.ClientSession, url: str, stop: asyncio.Event,
                       latencies: list[float], connections: int = 4) -> int:
    """Worker-shaped pushes back to back on `connections` connections until `stop`."""
    errors = 0

    async def one_connection(offset: int) -> None:
        nonlocal errors
        n = 0
        while not stop.is_set():
            n += 1
            body = orjson.dumps({"source": "small", "metrics": {
                f"probe_{offset}": n, "probe_other": offset}})
            started = time.perf_counter()
            try:
                async with session.post(url + "/ingest", data=body, headers=AUTH) as reply:
                    await reply.read()
                    if reply.status != 200:
                        errors += 1
            except aiohttp.ClientError:
                errors += 1
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(one_connection(i) for i in range(connections)))
    return errors


def p99_ms(latencies: list[float]) -> float:
    if not latencies:
        return float("nan")
    ordered = sorted(latencies)
    return 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


async def timed_get(session: aiohttp.ClientSession, url: str,
                    headers: dict[str, str] | None = None) -> tuple[float, int]:
    """Seconds and bytes of one GET; plain unless `headers` ask for gzip (aiohttp's client
    would ask for it by default)."""
    started = time.perf_counter()
    async with session.get(url, headers={"Accept-Encoding": "identity", **(headers or {})},
                           timeout=aiohttp.ClientTimeout(300), auto_decompress=False) as reply:
        body = await reply.read()
        assert reply.status == 200, reply.status
    return time.perf_counter() - started, len(body)


async def while_pushing(session: aiohttp.ClientSession, url: str,
                        work: Any) -> tuple[Any, float, int]:
    """Run `work` (a coroutine) with small pushes going on; (its result, their p99, errors)."""
    stop = asyncio.Event()
    latencies: list[float] = []
    pushers = asyncio.create_task(small_pushes(session, url, stop, latencies))
    await asyncio.sleep(0.3)  # let the small pushes settle before the work starts
    latencies.clear()
    try:
        result = await work
    finally:
        stop.set()
        errors = await pushers
    return result, p99_ms(latencies), errors


async def measure(url: str, server: systems.Running, series: int, per_push: int
                  ) -> dict[str, float]:
    out: dict[str, float] = {}
    jobs_per_push = per_push // METRICS_PER_JOB
    stamp = int(time.time()) - 5
    connector = aiohttp.TCPConnector(limit=16)
    async with aiohttp.ClientSession(connector=connector) as session:
        idle: list[float] = []
        stop = asyncio.Event()
        idle_task = asyncio.create_task(small_pushes(session, url, stop, idle))
        await asyncio.sleep(2)
        stop.set()
        await idle_task
        out["small_push_p99_idle_ms"] = p99_ms(idle)
        out["rss_before_mb"] = rss_mb(server)[0]
        started = time.perf_counter()
        for first in range(0, series // METRICS_PER_JOB, jobs_per_push):
            async with session.post(url + "/ingest", data=job_push(first, jobs_per_push, stamp),
                                    headers=AUTH, timeout=aiohttp.ClientTimeout(300)) as r:
                assert r.status == 200, await r.text()
        out["push_seconds"] = time.perf_counter() - started
        (first_scrape, size), p99, errors = await while_pushing(
            session, url, timed_get(session, url + "/metrics"))
        out.update(first_scrape_s=first_scrape, metrics_mb=size / 1e6,
                   small_push_p99_during_first_scrape_ms=p99, errors_first_scrape=errors)
        out["first_gzip_scrape_s"], gz_size = await timed_get(
            session, url + "/metrics", {"Accept-Encoding": "gzip"})
        out["metrics_gzip_mb"] = gz_size / 1e6
        steady = [(await timed_get(session, url + "/metrics"))[0] for _ in range(3)]
        out["steady_scrape_s"] = statistics.median(steady)
        steady_gz = [(await timed_get(session, url + "/metrics",
                                      {"Accept-Encoding": "gzip"}))[0] for _ in range(3)]
        out["steady_gzip_scrape_s"] = statistics.median(steady_gz)
        _, p99, errors = await while_pushing(
            session, url, timed_get(session, url + "/metrics"))
        out.update(small_push_p99_during_steady_scrape_ms=p99, errors_steady_scrape=errors)
        sources = [(await timed_get(session, url + "/api/sources"))[0] for _ in range(5)]
        out["api_sources_ms"] = 1000 * statistics.median(sources)
        new_jobs = job_push(10_000_000, 10_000, stamp + 1)  # 100k new series in one push

        async def big_push() -> float:
            began = time.perf_counter()
            async with session.post(url + "/ingest", data=new_jobs, headers=AUTH,
                                    timeout=aiohttp.ClientTimeout(300)) as reply:
                assert reply.status == 200, await reply.text()
            return time.perf_counter() - began

        out["push_100k_new_series_s"], p99, errors = await while_pushing(
            session, url, big_push())
        out.update(small_push_p99_during_100k_push_ms=p99, errors_100k_push=errors)
        out["rss_after_mb"], out["rss_peak_mb"] = rss_mb(server)
    return out


def run(workdir: Path, code: Path | None, series: int, per_push: int) -> dict[str, float]:
    env = {"PYTHONPATH": str(code)} if code is not None else {}
    env["METRICS_QUEUE_MAX_SAMPLES"] = str(max(200_000, per_push * 2))
    # A million job-level series in one source: beyond the default series budget (100,000).
    env["METRICS_MAX_SERIES_PER_SOURCE"] = env["METRICS_MAX_SERIES"] = str(series + 1_000_000)
    server = systems.metrics_ingest(workdir, env=env)
    try:
        return asyncio.run(measure(server.url, server, series, per_push))
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=1_000_000)
    parser.add_argument("--per-push", type=int, default=10_000)
    parser.add_argument("--base", help="also measure this revision, first, in the same run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mi-w10-") as tmp:
        root = Path(tmp)
        results = {}
        if args.base:
            export_revision(args.base, root / "base")
            (root / "w-base").mkdir()
            results["base"] = run(root / "w-base", root / "base", args.series, args.per_push)
            print(json.dumps({"base": args.base, **results["base"]}), flush=True)
        (root / "w-new").mkdir()
        results["new"] = run(root / "w-new", None, args.series, args.per_push)
        print(json.dumps({"new": "working tree", **results["new"]}), flush=True)
    for key in results["new"]:
        row = "  ".join(f"{side} {values.get(key, float('nan')):>10.2f}"
                        for side, values in results.items())
        print(f"{key:42} {row}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
