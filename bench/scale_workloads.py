"""The workloads of outgrowing one machine (issue 12), each measured side by side with its
baseline in one run, interleaved run by run:

- W12: W1 and W3 on PostgreSQL against the same on SQLite (the embedded default);
- W13: W1 with `serve --workers 2` against one worker, on SQLite, and the framework's own
  ceiling beside it: bare aiohttp (bench/bare_aiohttp.py) in two processes against one;
- W14: W1 over two replicas sharing one PostgreSQL database against one replica.

Every run starts its systems afresh (a new SQLite file or a new PostgreSQL cluster)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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
                | None = None,
                read_off: Callable[[Running], dict[str, Any]] | None = None
                ) -> dict[str, Runs]:
    """`plan.repeat` rounds; in each, every system in turn, started afresh, the order
    reversed every other round (A B, B A, A B...: a system always second would carry
    whatever the run before it leaves on the machine). Each run's extras: `read_off`'s, by
    default the samples the server committed and the rows really stored."""
    runs = {system: Runs([], []) for system in starts}
    for number in range(plan.repeat):
        order = list(starts.items())
        for system, start in order if number % 2 == 0 else reversed(order):
            target = start(plan.dir(f"{name}-{system}-{number}"))
            try:
                run = measure or load
                result = run(plan, target, script, make_args(number), connections)
                runs[system].results.append(result)
                runs[system].extras.append((read_off or stored)(target))
            finally:
                target.stop()
    return runs


def load_spread(plan: Plan, target: Running, script: str, args: list[str],
                connections: int) -> loadgen.LoadResult:
    """One wrk per URL of the target (its replicas), side by side, the connections shared
    out; each writes its own timestamps. The result adds them up."""
    urls = target.extra.get("urls", target.url).split(",")
    each = max(1, connections // len(urls))
    offsets = [str(int(args[1]) + 7 * 86400 * number) for number in range(len(urls))]
    with ThreadPoolExecutor(len(urls)) as pool:
        results = list(pool.map(
            lambda pair: loadgen.run_wrk(pair[0], script, [args[0], pair[1], *args[2:]], each,
                                         plan.seconds), zip(urls, offsets, strict=True)))
    return loadgen.LoadResult(
        requests=sum(r.requests for r in results), seconds=max(r.seconds for r in results),
        non_2xx=sum(r.non_2xx for r in results),
        socket_errors=sum(r.socket_errors for r in results),
        p50_ms=max(r.p50_ms for r in results), p99_ms=max(r.p99_ms for r in results),
        max_ms=max(r.max_ms for r in results),
        generator_cpu_pct=sum(r.generator_cpu_pct for r in results), generator="wrk")


def postgres_replicas(workdir: Path, count: int) -> Running:
    """`count` metrics-ingest replicas over one PostgreSQL cluster; the first is the target,
    extra["urls"] lists them all, and stopping it stops the others and the cluster."""
    stop_cluster, url = systems.postgres(workdir)
    started: list[Running] = []
    try:
        for number in range(count):
            started.append(systems.metrics_ingest(workdir / f"replica-{number}",
                                                  env={"METRICS_DB_PATH": url}))
    except BaseException:
        for running in started:
            running.stop()
        stop_cluster()
        raise
    first = started[0]
    first.name = f"metrics-ingest-postgres-x{count}"
    first.extra.update(db_url=url, urls=",".join(running.url for running in started))
    first.cleanup.append(stop_cluster)
    first.cleanup.extend(running.stop for running in reversed(started[1:]))
    return first


def stored(target: Running) -> dict[str, Any]:
    committed = sum(metric_total(scrape(url), "metrics_ingest_samples_received_total")
                    for url in target.extra.get("urls", target.url).split(","))
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


def w13(plan: Plan, peers_ok: bool) -> None:
    """W1 against `serve --workers 2` and one worker, on SQLite."""
    print("W13 --workers 2 against one worker, SQLite, W1 (64 connections)", flush=True)
    starts: dict[str, Start] = {
        "metrics-ingest-workers-1": systems.metrics_ingest,
        "metrics-ingest-workers-2": lambda workdir: systems.metrics_ingest(
            workdir, env={"METRICS_WORKERS": "2"})}
    runs = interleaved(plan, "w13", starts, "ingest_small.lua", lambda i: [TOKEN, ts_base(i)],
                       64)
    record(plan, "W13", runs, "req_per_s")
    # What a second process gives the framework alone, wrk on the same two cores: the most
    # two workers could give (bench/README.md, "serve --workers 2 on SQLite").
    ceiling: dict[str, Start] = {
        "bare-aiohttp-1": systems.bare_aiohttp,
        "bare-aiohttp-2": lambda workdir: systems.bare_aiohttp(workdir, processes=2)}
    runs = interleaved(plan, "w13-ceiling", ceiling, "ingest_small.lua",
                       lambda i: [TOKEN, ts_base(i)], 64, read_off=lambda target: {})
    record(plan, "W13", runs, "req_per_s")


def w14(plan: Plan, peers_ok: bool) -> None:
    """W1 over two replicas sharing one PostgreSQL database and over one."""
    print("W14 two PostgreSQL replicas against one, W1 (64 connections)", flush=True)
    starts: dict[str, Start] = {
        "metrics-ingest-postgres-x1": lambda workdir: postgres_replicas(workdir, 1),
        "metrics-ingest-postgres-x2": lambda workdir: postgres_replicas(workdir, 2)}
    runs = interleaved(plan, "w14", starts, "ingest_small.lua", lambda i: [TOKEN, ts_base(i)],
                       64, load_spread)
    record(plan, "W14", runs, "req_per_s")
