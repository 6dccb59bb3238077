"""Putting data in place before a workload: series pushed over HTTP, or whole databases written
directly with the service's own schema (for the 10-million-sample and purge workloads)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import aiohttp
import orjson

from metrics_ingest.formats.exposition import series_block
from metrics_ingest.store.sqlite import migrations, sql

SEED_METRICS_PER_OBJECT = 100


def seed_objects(n_series: int, now: int, prefix: str = "seed") -> list[list[dict[str, object]]]:
    """Pushes (JSON arrays of 10 objects x 100 metrics) holding `n_series` distinct series."""
    pushes: list[list[dict[str, object]]] = []
    objects: list[dict[str, object]] = []
    for start in range(0, n_series, SEED_METRICS_PER_OBJECT):
        count = min(SEED_METRICS_PER_OBJECT, n_series - start)
        objects.append({
            "source": prefix, "timestamp": now,
            "labels": {"shard": str(start // SEED_METRICS_PER_OBJECT)},
            "metrics": {f"{prefix}_metric_{i}": i for i in range(count)},
        })
        if len(objects) == 10:
            pushes.append(objects)
            objects = []
    if objects:
        pushes.append(objects)
    return pushes


async def _post_all(url: str, token: str, bodies: list[bytes], concurrency: int = 4) -> None:
    queue = list(reversed(bodies))
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    async def worker(session: aiohttp.ClientSession) -> None:
        while queue:
            body = queue.pop()
            async with session.post(url + "/ingest", data=body, headers=headers) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"seeding failed: {resp.status} {await resp.text()}")

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))


def seed_metrics_ingest(url: str, token: str, n_series: int) -> None:
    now = int(time.time())
    bodies = [orjson.dumps(push) for push in seed_objects(n_series, now)]
    asyncio.run(_post_all(url, token, bodies))


def push_one(url: str, token: str, n: int) -> None:
    """One small push, so the next scrape cannot reuse the previous body."""
    import urllib.request

    body = orjson.dumps({"source": "seed", "metrics": {"seed_touch": n}})
    request = urllib.request.Request(url + "/ingest", data=body, method="POST", headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


def seed_pushgateway(url: str, n_series: int) -> None:
    """The same series as Prometheus text, 100 per group (job=seed, instance=shard)."""
    import urllib.request

    for start in range(0, n_series, SEED_METRICS_PER_OBJECT):
        count = min(SEED_METRICS_PER_OBJECT, n_series - start)
        body = "".join(f"seed_metric_{i} {i}\n" for i in range(count)).encode()
        shard = start // SEED_METRICS_PER_OBJECT
        request = urllib.request.Request(f"{url}/metrics/job/seed/instance/shard{shard}",
                                         data=body, method="PUT")
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()


def build_history(db_path: Path, total_samples: int, start: int, end: int,
                  hpc: bool = True) -> int:
    """Write `total_samples` one-per-minute samples between `start` and `end` straight into a
    migrated database: the HPC pattern (2 Slurm gauges) plus synthetic labelled series.

    Returns the number of samples written. Timestamps increase, as real pushes do.
    """
    migrations.migrate(db_path)
    minutes = max(1, (end - start) // 60)
    per_minute = max(1, total_samples // minutes)
    names: list[tuple[int, str, str, str]] = []
    if hpc:
        names += [(1, "slurm_pending_jobs", "hpc", ""), (2, "slurm_running_jobs", "hpc", "")]
    synthetic = max(0, per_minute - len(names))
    for i in range(synthetic):
        labels = orjson.dumps({"host": f"n{i % 500:03d}", "partition": ["cpu", "gpu"][i % 2]})
        names.append((len(names) + 1, f"node_metric_{i // 500}", f"site{i % 7}", labels.decode()))
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("BEGIN")
    conn.executemany(sql.INSERT_SERIES, [(*row, series_block(row[2], row[3])) for row in names])
    conn.execute("COMMIT")
    written = 0
    latest: dict[int, tuple[int, int, float]] = {}
    ts = start
    batch: list[tuple[int, int, float]] = []
    while written < total_samples and ts < end:
        for series_id, *_ in names:
            value = float((series_id * 7 + ts // 60) % 1000)
            batch.append((ts, series_id, value))
            latest[series_id] = (series_id, ts, value)
            written += 1
            if written >= total_samples:
                break
        if len(batch) >= 200_000:
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO samples VALUES (?, ?, ?)", batch)
            conn.execute("COMMIT")
            batch = []
        ts += 60
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO samples VALUES (?, ?, ?)", batch)
    conn.executemany(sql.UPSERT_LATEST, list(latest.values()))
    conn.execute(sql.RECOUNT_SOURCES)
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return written
