"""The read and long-running workloads of bench/compare: W4 (scrapes), W5 (the JSON API over
10M samples), W6 (pushes during a purge), W10 (a million series) and W11 (big bodies)."""

from __future__ import annotations

import datetime as dt
import json
import statistics
import time

from bench import bigbodies, cardinality, loadgen, seed, systems
from bench.plan import Plan, load, metric_total, scrape, timed_gets, ts_base
from bench.systems import TOKEN


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
                        series_exported=exported, body_bytes=len(body),
                        runs=[1000 * t for t in times])
            gz = timed_gets(mi.url + "/metrics", count, {"Accept-Encoding": "gzip"})
            plan.record("W4", "metrics-ingest", f"scrape_gzip_ms_{n}",
                        1000 * statistics.median(gz), runs=[1000 * t for t in gz])
            # The same scrape when a push landed since the last one (the body is re-rendered).
            rerender = []
            for i in range(count):
                seed.push_one(mi.url, TOKEN, i)
                rerender += timed_gets(mi.url + "/metrics", 1)
            plan.record("W4", "metrics-ingest", f"scrape_after_push_ms_{n}",
                        1000 * statistics.median(rerender), runs=[1000 * t for t in rerender])
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
                    series_exported=exported, body_bytes=len(body),
                    runs=[1000 * t for t in times])
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
                    samples_in_db=written, rows_returned=returned, body_bytes=len(body),
                    runs=[1000 * t for t in times])
        times = timed_gets(mi.url + "/api/sources", count)
        plan.record("W5", "metrics-ingest", "api_sources_ms", 1000 * statistics.median(times),
                    sources=json.loads(systems.http_get(mi.url + "/api/sources")),
                    runs=[1000 * t for t in times])
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




def w10(plan: Plan, peers_ok: bool) -> None:
    """A million job-level series (bench/cardinality.py): memory, scrapes, /api/sources."""
    series = 20_000 if plan.quick else 1_000_000
    print(f"W10 cardinality: {series:,} series in 10k-series pushes", flush=True)
    out = cardinality.run(plan.dir("w10"), None, series, 10_000)
    for metric, value in out.items():
        plan.record("W10", "metrics-ingest", metric, value, series=series)


def w11(plan: Plan, peers_ok: bool) -> None:
    """Small pushes while big bodies are parsed (bench/bigbodies.py)."""
    print("W11 small pushes while three 6 MB Influx bodies and a 300k-series remote_write "
          "are parsed", flush=True)
    out = bigbodies.run(plan.dir("w11"), None, scale=0.05 if plan.quick else 1.0)
    for metric, value in out.items():
        plan.record("W11", "metrics-ingest", metric, value)
