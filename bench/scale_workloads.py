"""The workloads of outgrowing one machine (issue 12), each measured side by side with its
baseline in one run, interleaved run by run:

- W12: W1 and W3 on PostgreSQL against the same on SQLite (the embedded default);
- W13: W1 with `serve --workers 2` against one worker, on SQLite;
- W14: W1 over two replicas sharing one PostgreSQL database against one replica.

Every run starts its systems afresh (a new SQLite file or a new PostgreSQL cluster)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from bench import loadgen, systems
from bench.plan import Plan, Runs, load, metric_total, scrape, sqlite_count, ts_base
from bench.systems import TOKEN, Running

Start = Callable[[Path], Running]


def interleaved(plan: Plan, name: str, starts: dict[str, Start], script: str,
                make_args: Callable[[int], list[str]], connections: int,
                measure: Callable[[Plan, Running, str, list[str], int], loadgen.LoadResult]
                | None = None) -> dict[str, Runs]:
    """`plan.repeat` rounds; in each, every system in turn, started afresh. Each run's
    extras: samples the server committed and rows really stored."""
    runs = {system: Runs([], []) for system in starts}
    for number in range(plan.repeat):
        for system, start in starts.items():
            target = start(plan.dir(f"{name}-{system}-{number}"))
            try:
                run = measure or load
                result = run(plan, target, script, make_args(number), connections)
                runs[system].results.append(result)
                runs[system].extras.append(stored(target))
            finally:
                target.stop()
    return runs


def stored(target: Running) -> dict[str, Any]:
    committed = metric_total(scrape(target.url), "metrics_ingest_samples_received_total")
    url = target.extra.get("db_url")
    if url:
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT count(*) FROM samples").fetchone()
            rows = int(row[0]) if row else 0
    else:
        rows = sqlite_count(target.extra["db"])
    return {"samples_committed": committed, "rows_in_db": rows}


def record(plan: Plan, workload: str, runs: dict[str, Runs], metric: str,
           scale: float = 1.0) -> None:
    for system, system_runs in runs.items():
        best, extra = system_runs.median
        plan.record(workload, system, metric, best.rps * scale, **best.as_dict(), **extra,
                    runs=system_runs.values(scale))


def w12(plan: Plan, peers_ok: bool) -> None:
    """W1 and W3 shapes on PostgreSQL and on SQLite, interleaved."""
    print("W12 PostgreSQL against SQLite: W1 (64 connections) and W3 (16)", flush=True)
    starts: dict[str, Start] = {"metrics-ingest-sqlite": systems.metrics_ingest,
                                "metrics-ingest-postgres": systems.metrics_ingest_postgres}
    small = interleaved(plan, "w12-w1", starts, "ingest_small.lua",
                        lambda i: [TOKEN, ts_base(i)], 64)
    record(plan, "W12", small, "w1_req_per_s")
    bulk = interleaved(plan, "w12-w3", starts, "ingest_bulk.lua",
                       lambda i: [TOKEN, ts_base(i)], 16)
    record(plan, "W12", bulk, "w3_samples_per_s", 1000)
