"""W9: PromQL where dashboards live, side by side with Prometheus 2.42 holding the same
samples (issue 14). One database of 10.1M samples: `x`, a counter of 10,000 series (labels
`group` g0-g9 of 1,000 series each, `node`, and 100 sources) sampled every 30 s for 8 h 20 m,
and 100 other names of one series each. The same samples go to metrics-ingest (written into
its schema directly, as W5 does) and to Prometheus (blocks made by `promtool tsdb
create-blocks-from openmetrics`); the measuring starts once metrics-ingest holds every
sample in its packed blocks too, as it does behind the writer from 2 minutes after a
sample's time on (store/sqlite/blocks.py). Each query is asked of both over HTTP once
unmeasured (the cold figure is kept as cold_ms), then alternately round by round, and
their answers compared:

- range: `sum by (source) (rate(x{group="g3"}[5m]))` over 6 h at a 15 s step (1,000 series);
- instant: `sum by (source) (rate(x[5m]))` (10,000 series);
- names: `/api/v1/label/__name__/values` over the last hour, as Grafana's metric picker asks.

Then W1's pushes (64 connections) against metrics-ingest alone, and again while the range
query runs back to back: the push p99 during a heavy query against the idle one."""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
import statistics
import subprocess
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench import systems
from bench.plan import Plan, load, ts_base
from bench.systems import TOKEN, Running
from metrics_ingest.formats.exposition import series_block
from metrics_ingest.model import canonical_labels
from metrics_ingest.query_pool import QUERY_WORKERS
from metrics_ingest.store.sample_arrays import GRACE_SECONDS
from metrics_ingest.store.sqlite import migrations, sql

STEP = 30  # seconds between samples
RANGE = 'sum by (source) (rate(x{group="g3"}[5m]))'
INSTANT = "sum by (source) (rate(x[5m]))"


def shape(quick: bool) -> tuple[int, int]:
    """(series of x, samples per series)."""
    return (1000, 200) if quick else (10_000, 1000)


def series_of(count: int) -> list[tuple[str, str, dict[str, str]]]:
    """(name, source, labels) of every series, in id order."""
    out = [("x", f"s{i % 100:02d}", {"group": f"g{i % 10}", "node": f"n{i:05d}"})
           for i in range(count)]
    out += [(f"aux_metric_{i:03d}", "aux", {}) for i in range(100)]
    return out


def value(index: int, step: int) -> float:
    """A counter rising by a few units a step, at a rate of its own."""
    return float(step * (index % 7 + 1)) + (index % 13) * 0.25


def build_metrics_ingest(db: Path, count: int, per: int, end: int) -> int:
    migrations.migrate(db)
    series = series_of(count)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("BEGIN")
    rows = []
    for i, (name, source, labels) in enumerate(series):
        text = canonical_labels(labels) if labels else ""
        rows.append((i + 1, name, source, text, series_block(source, text)))
    conn.executemany(sql.INSERT_SERIES, rows)
    conn.execute("COMMIT")
    start = end - (per - 1) * STEP
    for k in range(per):
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO samples VALUES (?, ?, ?)",
                         [(start + k * STEP, i + 1, value(i, k)) for i in range(len(series))])
        conn.execute("COMMIT")
    conn.execute("BEGIN")
    conn.executemany(sql.UPSERT_LATEST, [(i + 1, end, value(i, per - 1))
                                         for i in range(len(series))])
    conn.execute(sql.RECOUNT_SOURCES)
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return len(series) * per


def blocks_built(db: Path, newest: int, limit: float = 600) -> float:
    """Wait (polling the file) until the server holds every sample in packed blocks
    (store/sqlite/blocks.py), as it does behind the writer from GRACE_SECONDS after a
    sample's time on; the seconds it took."""
    started = time.monotonic()
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        while conn.execute("SELECT blocks_upto FROM store_state").fetchone()[0] <= newest:
            if time.monotonic() - started > limit:
                raise RuntimeError(f"the server made no blocks past {newest} in {limit:.0f} s")
            time.sleep(0.2)
    finally:
        conn.close()
    return time.monotonic() - started


def build_prometheus(workdir: Path, count: int, per: int, end: int) -> None:
    """The same samples as OpenMetrics text, made into blocks by promtool."""
    workdir.mkdir(parents=True, exist_ok=True)
    series = series_of(count)
    heads = []
    for name, source, labels in series:
        every = {"source": source, **labels}
        heads.append(name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(every.items()))
                     + "} ")
    text = workdir / "samples.om"
    start = end - (per - 1) * STEP
    with text.open("w") as out:
        for k in range(per):
            stamp = f" {start + k * STEP}\n"
            out.write("".join(f"{head}{value(i, k)!r}{stamp}" for i, head in enumerate(heads)))
        out.write("# EOF\n")
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(text),
                    str(workdir / "tsdb")], check=True, capture_output=True, timeout=1800)
    text.unlink()


def ask(base: str, path: str, params: dict[str, str]) -> tuple[float, Any]:
    """(seconds, data) of one GET of the query API."""
    url = f"{base}{path}?{urllib.parse.urlencode(params)}"
    started = time.perf_counter()
    body = systems.http_get(url, timeout=300)
    took = time.perf_counter() - started
    answer = json.loads(body)
    if answer.get("status") != "success":
        raise RuntimeError(f"{base}{path} {params}: {answer}")
    return took, answer["data"]


def cold_asks(base: str, path: str, params: dict[str, str], count: int) -> list[float]:
    """`count` asks at once; the seconds of each."""
    with ThreadPoolExecutor(count) as pool:
        return [seconds for seconds, _ in pool.map(lambda _: ask(base, path, params),
                                                   range(count))]


def same(a: Any, b: Any) -> bool:
    """Equal answers: the same series (in any order) and values to 1e-9 relative."""
    if isinstance(a, list) and a and isinstance(a[0], str):
        return bool(a == b)
    def keyed(data: Any) -> dict[str, Any]:
        return {json.dumps(r["metric"], sort_keys=True): r.get("values") or [r["value"]]
                for r in data["result"]}
    left, right = keyed(a), keyed(b)
    if left.keys() != right.keys():
        return False
    for key, points in left.items():
        other = right[key]
        if [p[0] for p in points] != [p[0] for p in other]:
            return False
        if not all(math.isclose(float(p[1]), float(q[1]), rel_tol=1e-9)
                   for p, q in zip(points, other, strict=True)):
            return False
    return True


def queries(end: int) -> dict[str, tuple[str, dict[str, str]]]:
    return {
        "range_6h_ms": ("/api/v1/query_range", {"query": RANGE, "start": str(end - 6 * 3600),
                                                "end": str(end), "step": "15"}),
        "instant_10k_ms": ("/api/v1/query", {"query": INSTANT, "time": str(end)}),
        "label_names_ms": ("/api/v1/label/__name__/values",
                           {"start": str(end - 3600), "end": str(end)}),
    }


def w9(plan: Plan, peers_ok: bool) -> None:
    count, per = shape(plan.quick)
    rounds = 3 if plan.quick else 15
    print(f"W9 PromQL: {count:,} series x {per:,} samples at {STEP} s, {rounds} rounds per "
          "query, against Prometheus 2.42 holding the same samples", flush=True)
    # The newest sample a grace period old already, so the server packs every sample into
    # blocks as soon as it starts instead of two minutes of waiting (the queries name `end`).
    end = (int(time.time()) - GRACE_SECONDS) // STEP * STEP - STEP
    workdir = plan.dir("w9")
    started = time.monotonic()
    samples = build_metrics_ingest(workdir / "metrics.db", count, per, end)
    prometheus: Running | None = None
    with_peer = shutil.which("prometheus") is not None and shutil.which("promtool") is not None
    if with_peer:
        build_prometheus(workdir / "prometheus", count, per, end)
    print(f"  built {samples:,} samples in {time.monotonic() - started:.0f} s", flush=True)
    mi = systems.metrics_ingest(workdir / "mi", db_path=workdir / "metrics.db")
    try:
        took = blocks_built(workdir / "metrics.db", end)
        print(f"  packed blocks built by the server in {took:.0f} s", flush=True)
        if with_peer:
            prometheus = systems.prometheus(
                workdir / "prometheus", flags=("--storage.tsdb.retention.time=30d",))
        targets = {"metrics-ingest": mi.url}
        if prometheus is not None:
            targets["prometheus"] = prometheus.url
        for metric, (path, params) in queries(end).items():
            times: dict[str, list[float]] = {name: [] for name in targets}
            answers: dict[str, Any] = {}
            # Unmeasured asks first (the slowest recorded as cold_ms): metrics-ingest starts
            # its query worker processes on the first query and each worker's first query
            # maps the pages it reads (asked of all QUERY_WORKERS at once, so each answers
            # one), Prometheus loads its blocks' indexes; dashboards ask again and again.
            cold = {name: round(max(cold_asks(url, path, params,
                                              QUERY_WORKERS if name == "metrics-ingest"
                                              else 1)) * 1000, 1)
                    for name, url in targets.items()}
            for _ in range(rounds):
                for name, url in targets.items():
                    took, answers[name] = ask(url, path, params)
                    times[name].append(took * 1000)
            agree = (same(answers["prometheus"], answers["metrics-ingest"])
                     if "prometheus" in answers else None)
            for name, runs in times.items():
                plan.record("W9", name, metric, statistics.median(runs), runs=runs,
                            cold_ms=cold[name], samples_in_db=samples, same_answer=agree)
        push_p99(plan, mi, queries(end)["range_6h_ms"])
    finally:
        mi.stop()
        if prometheus is not None:
            prometheus.stop()


def push_p99(plan: Plan, mi: Running, heavy: tuple[str, dict[str, str]]) -> None:
    """W1's pushes alone, then with the heavy range query asked back to back."""
    idle = load(plan, mi, "ingest_small.lua", [TOKEN, ts_base(0)], 64)
    stop = threading.Event()
    asked: list[float] = []

    def query_loop() -> None:
        while not stop.is_set():
            asked.append(ask(mi.url, *heavy)[0])

    worker = threading.Thread(target=query_loop, daemon=True)
    worker.start()
    try:
        busy = load(plan, mi, "ingest_small.lua", [TOKEN, ts_base(1)], 64)
    finally:
        stop.set()
        worker.join(timeout=300)
    plan.record("W9", "metrics-ingest", "push_p99_ms_idle", idle.p99_ms, **idle.as_dict())
    plan.record("W9", "metrics-ingest", "push_p99_ms_during_query", busy.p99_ms,
                **busy.as_dict(), queries_during=len(asked),
                query_ms=round(1000 * statistics.median(asked), 1) if asked else None)

