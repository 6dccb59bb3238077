"""What parsing PromQL costs: `promql_parser.parse` (the Rust parser behind the PyPI
`promql-parser` package) on the queries dashboards and alert rules send, against the cost of
walking the tree it returns, median of rounds.

    .venv/bin/python -m bench.promql_parse [--rounds 7] [--loops 2000]
"""

from __future__ import annotations

import argparse
import statistics
import time

import promql_parser

# What Grafana panels, the shipped dashboard and typical alert rules send.
QUERIES = (
    "up",
    'slurm_pending_jobs{source="hpc"}',
    "sum by (source) (rate(metrics_ingest_samples_received_total[5m]))",
    'histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket'
    '{job="api",code=~"2.."}[5m])))',
    "max_over_time(slurm_running_jobs[1h]) - min_over_time(slurm_running_jobs[1h])",
    '100 * (1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[5m])))',
    "sum(rate(errors_total[5m])) / sum(rate(requests_total[5m])) > 0.05",
    'label_replace(up{job=~"node|db"}, "host", "$1", "instance", "(.*):.*")',
    "topk(10, sum without (instance) (increase(jobs_done_total[1d])))",
    'predict_linear(node_filesystem_free_bytes{mountpoint="/"}[6h], 4 * 3600) < 0',
    "avg_over_time((sum(rate(x_total[1m])))[30m:1m])",
    'a{source="hpc"} / on (partition) group_left (cluster) b offset 5m',
)


def per_call_us(function: object, argument: str, loops: int) -> float:
    call = function  # bound once, as a handler would
    start = time.perf_counter()
    for _ in range(loops):
        call(argument)  # type: ignore[operator]
    return (time.perf_counter() - start) / loops * 1e6


def walk_all(text: str) -> int:
    """Parse and visit every node, as the evaluator does before it reads a sample."""
    count = 0

    def visit(_: object) -> None:
        nonlocal count
        count += 1

    promql_parser.walk(promql_parser.parse(text), visit)
    return count


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--rounds", type=int, default=7)
    options.add_argument("--loops", type=int, default=2000)
    args = options.parse_args()
    parse_us: dict[str, list[float]] = {query: [] for query in QUERIES}
    walk_us: dict[str, list[float]] = {query: [] for query in QUERIES}
    for _ in range(args.rounds):
        for query in QUERIES:  # interleaved, so drift hits every query alike
            parse_us[query].append(per_call_us(promql_parser.parse, query, args.loops))
            walk_us[query].append(per_call_us(walk_all, query, args.loops))
    print(f"promql-parser, median of {args.rounds} rounds x {args.loops} calls, µs per query")
    print(f"{'parse':>8} {'+walk':>8}  query")
    medians = []
    for query in QUERIES:
        parse = statistics.median(parse_us[query])
        medians.append(parse)
        print(f"{parse:8.1f} {statistics.median(walk_us[query]):8.1f}  {query[:70]}")
    print(f"median over the queries: {statistics.median(medians):.1f} µs; "
          f"slowest {max(medians):.1f} µs")


if __name__ == "__main__":
    main()
