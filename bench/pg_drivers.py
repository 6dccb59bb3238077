"""Which PostgreSQL driver the store uses: psycopg 3 against asyncpg on the store's own
statement shapes, against one throwaway cluster (fsync on), interleaved, median of rounds.

    .venv/bin/python -m bench.pg_drivers [--rounds 5]

Shapes: a W1 commit (BEGIN, upsert 2 samples and 2 latest rows, COMMIT; sequential, per
transaction), a W3 batch (10,000 sample rows as three arrays through unnest, upserted; rows
per second; and for psycopg the same rows by binary COPY), a /metrics range read (100,000
rows of five columns; rows per second). psycopg runs as the writer thread would (blocking
calls); asyncpg on its own event loop.
Needs both drivers installed (`pip install asyncpg`; the store needs only psycopg).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.pg_cluster import start_cluster

SCHEMA = """
DROP TABLE IF EXISTS samples, latest, wide;
CREATE TABLE samples (timestamp bigint NOT NULL, series_id bigint NOT NULL,
                      value double precision NOT NULL, PRIMARY KEY (timestamp, series_id));
CREATE TABLE latest (series_id bigint PRIMARY KEY, timestamp bigint NOT NULL,
                     value double precision NOT NULL);
CREATE TABLE wide (id bigint PRIMARY KEY, name text, head text, value double precision,
                   ts bigint);
INSERT INTO wide SELECT i, 'slurm_job_metric_' || (i % 10),
    'slurm_job_metric_' || (i % 10) || '{source="hpc",job_id="' || i || '"}', i * 1.5, 1700000000
FROM generate_series(1, 100000) i;
"""
SMALL_SAMPLES = ("INSERT INTO samples VALUES ({0}, {0}, {0}), ({0}, {0}, {0})"
                 " ON CONFLICT (timestamp, series_id) DO UPDATE SET value = excluded.value")
BULK = ("INSERT INTO samples SELECT * FROM unnest({0}::bigint[], {0}::bigint[],"
        " {0}::float8[]) ON CONFLICT (timestamp, series_id) DO UPDATE SET value = excluded.value")
LATEST = ("INSERT INTO latest VALUES ({0}, {0}, {0}), ({0}, {0}, {0})"
          " ON CONFLICT (series_id) DO UPDATE SET timestamp = excluded.timestamp,"
          " value = excluded.value")
COPY = "COPY samples (timestamp, series_id, value) FROM STDIN (FORMAT BINARY)"
READ = "SELECT id, name, head, value, ts FROM wide WHERE id BETWEEN 1 AND 100000 ORDER BY id"


def pg_style(template: str) -> str:
    """psycopg's placeholders: every {0} becomes %b, a parameter sent in binary (as asyncpg
    sends them all; with text parameters, %s, psycopg's bulk rate was 20% lower)."""
    return template.replace("{0}", "%b")


def asyncpg_style(template: str) -> str:
    """asyncpg's numbered placeholders."""
    out, n = template, 0
    while "{0}" in out:
        n += 1
        out = out.replace("{0}", f"${n}", 1)
    return out


def psycopg_round(url: str, stamp: int) -> dict[str, float]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        small_s, small_l = pg_style(SMALL_SAMPLES), pg_style(LATEST)
        started = time.perf_counter()
        for i in range(2000):
            with conn.transaction():
                conn.execute(small_s, (stamp + i, 1, 1.0, stamp + i, 2, 2.0), prepare=True)
                conn.execute(small_l, (1, stamp + i, 1.0, 2, stamp + i, 2.0), prepare=True)
        small = (time.perf_counter() - started) / 2000
        bulk = pg_style(BULK)
        started = time.perf_counter()
        for batch in range(30):
            ids = list(range(10000))
            conn.execute(bulk, ([stamp + batch] * 10000, ids, [float(i) for i in ids]))
        bulk_rate = 300000 / (time.perf_counter() - started)
        started = time.perf_counter()
        for batch in range(30):  # the same rows by binary COPY (psycopg only)
            with conn.transaction(), conn.cursor().copy(COPY) as copy:
                copy.set_types(["int8", "int8", "float8"])
                for i in range(10000):
                    copy.write_row((stamp + 500_000 + batch, i, float(i)))
        copy_rate = 300000 / (time.perf_counter() - started)
        started = time.perf_counter()
        with conn.cursor() as cursor:
            rows = cursor.execute(READ, binary=True).fetchall()
        read_rate = len(rows) / (time.perf_counter() - started)
    return {"w1_commit_ms": small * 1000, "w3_rows_per_s": bulk_rate,
            "w3_copy_rows_per_s": copy_rate, "read_rows_per_s": read_rate}


def asyncpg_round(url: str, stamp: int) -> dict[str, float]:
    import asyncpg

    async def measure() -> dict[str, float]:
        conn = await asyncpg.connect(url)
        try:
            small_s, small_l = asyncpg_style(SMALL_SAMPLES), asyncpg_style(LATEST)
            started = time.perf_counter()
            for i in range(2000):
                async with conn.transaction():
                    await conn.execute(small_s, stamp + i, 1, 1.0, stamp + i, 2, 2.0)
                    await conn.execute(small_l, 1, stamp + i, 1.0, 2, stamp + i, 2.0)
            small = (time.perf_counter() - started) / 2000
            bulk = asyncpg_style(BULK)
            started = time.perf_counter()
            for batch in range(30):
                ids = list(range(10000))
                await conn.execute(bulk, [stamp + batch] * 10000, ids, [float(i) for i in ids])
            bulk_rate = 300000 / (time.perf_counter() - started)
            started = time.perf_counter()
            rows = await conn.fetch(READ)
            read_rate = len(rows) / (time.perf_counter() - started)
        finally:
            await conn.close()
        return {"w1_commit_ms": small * 1000, "w3_rows_per_s": bulk_rate,
                "read_rows_per_s": read_rate}

    return asyncio.run(measure())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    cluster = start_cluster()
    if cluster is None:
        print("PostgreSQL is not installed (Debian package postgresql)", file=sys.stderr)
        return 1
    try:
        import psycopg

        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            conn.execute(SCHEMA)
        drivers: dict[str, Callable[[str, int], dict[str, float]]] = {
            "psycopg": psycopg_round, "asyncpg": asyncpg_round}
        results: dict[str, list[dict[str, float]]] = {name: [] for name in drivers}
        for round_number in range(args.rounds):
            for name, run in drivers.items():  # interleaved: A, B, A, B, ...
                stamp = 1_000_000 * (round_number * 2 + (name == "asyncpg")) + 1
                results[name].append(run(cluster.url(), stamp))
                print(f"round {round_number + 1} {name}: {results[name][-1]}", flush=True)
        for metric in ("w1_commit_ms", "w3_rows_per_s", "w3_copy_rows_per_s",
                       "read_rows_per_s"):
            medians = {name: statistics.median(r[metric] for r in runs if metric in r)
                       for name, runs in results.items() if metric in runs[0]}
            print(f"{metric:18} " + "  ".join(f"{name} {value:,.3f}"
                                              for name, value in medians.items()))
    finally:
        cluster.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
