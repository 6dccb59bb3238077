"""What a PromQL query costs end to end in the evaluator (selection, sample reads, evaluation;
no HTTP), over an SQLite store of `--series` counters sampled every minute for a day, median
of rounds, against the parse alone.

    .venv/bin/python -m bench.promql_queries [--series 100] [--rounds 5]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import promql_parser

from metrics_ingest import promql
from metrics_ingest.store import open_store

DAY = 86_400


def seed(path: Path, series: int, end: int) -> None:
    store = open_store(path)
    store.migrate()
    db = sqlite3.connect(path)
    db.executemany("INSERT INTO series (id, metric_name, source, labels) VALUES (?, ?, ?, ?)",
                   [(i + 1, "jobs_total", f"s{i % 10}", f'{{"node":"n{i}"}}')
                    for i in range(series)])
    db.executemany("INSERT INTO samples VALUES (?, ?, ?)",
                   ((t, i + 1, float((t - end + DAY) // 60 * (i + 1)))
                    for t in range(end - DAY, end, 60) for i in range(series)))
    db.executemany("INSERT INTO latest (series_id, timestamp, value) VALUES (?, ?, 0)",
                   [(i + 1, end - 60) for i in range(series)])
    db.commit()
    db.close()


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--series", type=int, default=100)
    options.add_argument("--rounds", type=int, default=5)
    args = options.parse_args()
    end = int(time.time()) // 60 * 60
    with tempfile.TemporaryDirectory() as workdir:
        path = Path(workdir) / "bench.db"
        seed(path, args.series, end)
        reader = open_store(path).open_query_reader()
        cases = [
            ("instant, one series", 'jobs_total{node="n1"}', None),
            ("instant rate, one series", 'rate(jobs_total{node="n1"}[5m])', None),
            ("instant sum by of rate, all series", "sum by (source) (rate(jobs_total[5m]))",
             None),
            ("6 h range at 60 s, one series", 'rate(jobs_total{node="n1"}[5m])', 6 * 3600),
            ("6 h range at 60 s, sum by over all", "sum by (source) (rate(jobs_total[5m]))",
             6 * 3600),
        ]
        print(f"{args.series} series x 1 day at 60 s ({args.series * 1440:,} samples), "
              f"median of {args.rounds}, ms")
        for title, text, span in cases:
            times = []
            for _ in range(args.rounds):
                started = time.perf_counter()
                deadline = time.monotonic() + 60
                if span is None:
                    promql.instant_query(reader, text, end * 1000, max_samples=50_000_000,
                                         deadline=deadline)
                else:
                    promql.range_query(reader, text, (end - span) * 1000, end * 1000, 60_000,
                                       max_samples=50_000_000, deadline=deadline)
                times.append((time.perf_counter() - started) * 1000)
            parse_ms = min(timeit_parse(text) for _ in range(3))
            print(f"{statistics.median(times):9.2f}  (parse {parse_ms:.3f})  {title}: {text}")
        reader.close()


def timeit_parse(text: str) -> float:
    started = time.perf_counter()
    for _ in range(100):
        promql_parser.parse(text)
    return (time.perf_counter() - started) * 10  # ms per parse


if __name__ == "__main__":
    main()
