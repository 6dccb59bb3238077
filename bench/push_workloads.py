"""The push workloads of bench/compare: W1 (small pushes), W2 (W1 with 10k series stored),
W3 (1,000-sample pushes) and W8 (the formats sites already send), each run against a freshly
started system, metrics-ingest and peers alike."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import encode, loadgen, raw_sqlite, seed, systems
from bench.plan import Plan, fresh_runs, metric_total, scrape, sqlite_count, ts_base
from bench.systems import TOKEN, Running


def committed(target: Running) -> float:
    return metric_total(scrape(target.url), "metrics_ingest_samples_received_total")


def w1(plan: Plan, peers_ok: bool) -> None:
    """Small pushes, the Worker's shape, 64 connections."""
    print("W1 small pushes, 64 connections", flush=True)

    def after_mi(target: Running, result: loadgen.LoadResult) -> dict[str, Any]:
        return {"samples_committed": committed(target),
                "samples_acked_by_wrk": 2 * (result.requests - result.non_2xx),
                "rows_in_db": sqlite_count(target.extra["db"]),
                "peak_rss_mb": target.peak_rss_mb()}

    runs = fresh_runs(plan, "w1-mi", systems.metrics_ingest, "ingest_small.lua",
                      lambda i: [TOKEN, ts_base(i)], 64, after_mi)
    best, extra = runs.median
    plan.record("W1", "metrics-ingest", "req_per_s", best.rps, **best.as_dict(), **extra,
                runs=runs.values())
    plan.record("W1", "metrics-ingest", "p99_ms", best.p99_ms,
                runs=[r.p99_ms for r in runs.results])
    plan.record("W7", "metrics-ingest", "peak_rss_mb_w1",
                max(e["peak_rss_mb"] for e in runs.extras))
    runs = fresh_runs(plan, "w1-bare", systems.bare_aiohttp, "ingest_small.lua",
                      lambda i: [TOKEN, ts_base(i)], 64)
    best, _ = runs.median
    plan.record("W1", "bare-aiohttp", "req_per_s", best.rps, **best.as_dict(),
                runs=runs.values())
    if not peers_ok:
        return
    for check in (True, False):
        def start(workdir: Path, check: bool = check) -> Running:
            return systems.pushgateway(workdir, consistency_check=check)

        def after_pgw(target: Running, result: loadgen.LoadResult) -> dict[str, Any]:
            return {"pushes_counted": metric_total(
                scrape(target.url), "pushgateway_http_requests_total", code="200",
                handler="push")}

        # One fixed group ("hpc"), the same two gauges every push, a fresh Pushgateway a run.
        runs = fresh_runs(plan, "w1-pgw", start, "pgw_small.lua", lambda i: ["hpc"], 64,
                          after_pgw)
        best, extra = runs.median
        name = "pushgateway" if check else "pushgateway-nocheck"
        plan.record("W1", name, "req_per_s", best.rps, **best.as_dict(), **extra,
                    runs=runs.values())


def w2(plan: Plan, peers_ok: bool) -> None:
    """W1 with 10,000 distinct series already stored and fresh."""
    n = 1000 if plan.quick else 10_000
    print(f"W2 small pushes with {n} series stored", flush=True)
    runs = fresh_runs(plan, "w2-mi", systems.metrics_ingest, "ingest_small.lua",
                      lambda i: [TOKEN, ts_base(i)], 64,
                      prepare=lambda target: seed.seed_metrics_ingest(target.url, TOKEN, n))
    best, _ = runs.median
    plan.record("W2", "metrics-ingest", "req_per_s", best.rps, **best.as_dict(),
                series_stored=n, runs=runs.values())
    if not peers_ok:
        return
    runs = fresh_runs(plan, "w2-pgw", systems.pushgateway, "pgw_small.lua", lambda i: ["hpc"],
                      64, prepare=lambda target: seed.seed_pushgateway(target.url, n))
    best, _ = runs.median
    plan.record("W2", "pushgateway", "req_per_s", best.rps, **best.as_dict(), series_stored=n,
                runs=runs.values())


def w3(plan: Plan, peers_ok: bool) -> None:
    """Bulk pushes of 1,000 samples, 16 connections; plus W7's bytes/sample and RSS."""
    print("W3 bulk pushes (1,000 samples each), 16 connections", flush=True)

    def after_mi(target: Running, result: loadgen.LoadResult) -> dict[str, Any]:
        db = Path(target.extra["db"])
        rows = sqlite_count(str(db))
        return {"samples_committed": committed(target), "peak_rss_mb": target.peak_rss_mb(),
                "rows": rows, "db_bytes": db.stat().st_size}

    started = time.monotonic()
    runs = fresh_runs(plan, "w3-mi", systems.metrics_ingest, "ingest_bulk.lua",
                      lambda i: [TOKEN, ts_base(i)], 16, after_mi)
    best, extra = runs.median
    plan.record("W3", "metrics-ingest", "samples_per_s", best.rps * 1000, **best.as_dict(),
                samples_committed=extra["samples_committed"],
                wall_s=round(time.monotonic() - started, 1), runs=runs.values(1000))
    plan.record("W7", "metrics-ingest", "peak_rss_mb_w3",
                max(e["peak_rss_mb"] for e in runs.extras))
    plan.record("W7", "metrics-ingest", "bytes_per_sample", extra["db_bytes"] / extra["rows"],
                rows=extra["rows"], db_bytes=extra["db_bytes"])
    raw_rows = 200_000 if plan.quick else 2_000_000
    for with_latest in (True, False):
        values = [raw_sqlite.raw_insert_rate(plan.dir("w3-raw") / "raw.db", raw_rows,
                                             with_latest=with_latest)["rows_per_s"]
                  for _ in range(plan.repeat)]
        name = "raw-sqlite" if with_latest else "raw-sqlite-samples-only"
        plan.record("W3", name, "samples_per_s", sorted(values)[(len(values) - 1) // 2],
                    rows=raw_rows, runs=values)
    runs = fresh_runs(plan, "w3-bare", systems.bare_aiohttp, "ingest_bulk.lua",
                      lambda i: [TOKEN, ts_base(i)], 16)
    best, _ = runs.median
    plan.record("W3", "bare-aiohttp", "samples_per_s", best.rps * 1000, **best.as_dict(),
                runs=runs.values(1000))
    if not peers_ok:
        return
    runs = fresh_runs(plan, "w3-pgw", systems.pushgateway, "pgw_bulk.lua", lambda i: [], 16)
    best, _ = runs.median
    plan.record("W3", "pushgateway", "samples_per_s", best.rps * 1000, **best.as_dict(),
                runs=runs.values(1000))

    def after_vm(target: Running, result: loadgen.LoadResult) -> dict[str, Any]:
        systems.http_get(target.url + "/internal/force_flush")
        return {"rows_counted": metric_total(scrape(target.url), "vm_rows_inserted_total")}

    runs = fresh_runs(plan, "w3-vm", systems.victoria_metrics, "vm_bulk.lua",
                      lambda i: [ts_base(i)], 16, after_vm)
    best, extra = runs.median
    plan.record("W3", "victoriametrics", "samples_per_s", best.rps * 1000, **best.as_dict(),
                **extra, runs=runs.values(1000))


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
    cases: list[tuple[str, Callable[[Path], Running], str, str, str, str, str | None]] = [
        ("influx", systems.metrics_ingest, "POST", "/api/v2/write?bucket=bulk&precision=s",
         bearer, "text/plain", None),
        ("remote_write", systems.metrics_ingest, "POST", "/api/v1/write", bearer,
         "application/x-protobuf", "snappy"),
        ("pushgateway", systems.metrics_ingest, "PUT", "/metrics/job/bulk", bearer,
         "text/plain", None),
    ]
    if peers_ok:
        cases += [
            ("influx", systems.victoria_metrics, "POST", "/write?precision=s", "-",
             "text/plain", None),
            ("remote_write", systems.victoria_metrics, "POST", "/api/v1/write", "-",
             "application/x-protobuf", "snappy"),
            ("pushgateway", systems.pushgateway, "PUT", "/metrics/job/bulk", "-", "text/plain",
             None),
        ]
    for kind, start, method, path, auth, content_type, encoding in cases:
        args = [method, path, str(bodies / kind), str(count), auth, content_type]
        if encoding:
            args.append(encoding)

        def after(target: Running, result: loadgen.LoadResult) -> dict[str, Any]:
            return ({"samples_committed": committed(target)}
                    if target.name == "metrics-ingest" else {})

        runs = fresh_runs(plan, f"w8-{kind}-{start.__name__}", start, "files.lua",
                          lambda i, a=args: a, 16, after)
        best, extra = runs.median
        name = "metrics-ingest" if start is systems.metrics_ingest else (
            "victoriametrics" if start is systems.victoria_metrics else "pushgateway")
        plan.record("W8", name, f"{kind}_samples_per_s", best.rps * 1000, **best.as_dict(),
                    **extra, runs=runs.values(1000))
