"""What showing `serve --workers N` as one service costs (metrics_ingest/worker_telemetry.py):
a worker's snapshot written (once a second, and before each scrape or status page) and a
scrape's read of every worker's, for sources by the hundred to ten thousand. Median of
rounds, on the event loop's thread as in the server.

    .venv/bin/python -m bench.worker_counts [--workers 2] [--rounds 31]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from metrics_ingest.telemetry import Telemetry
from metrics_ingest.worker_telemetry import ServiceTelemetry

FORMAT = object()


def counted(sources: int) -> Telemetry:
    """A worker's counts: each source pushed (its samples, last push, format), and
    requests by route and code."""
    telemetry = Telemetry()
    for number in range(sources):
        source = f"node{number:05d}"
        telemetry.samples_received[source] = 1000 + number
        telemetry.last_push[source] = 1.8e9 + number
        telemetry.pushed_with[FORMAT][source] = 1.8e9 + number
    for route in ("ingest", "metrics", "write", "api_metrics"):
        for code in ("200", "204", "400", "503"):
            telemetry.requests[(route, code)] = 5
    return telemetry


def measure(sources: int, workers: int, rounds: int, directory: Path) -> None:
    """One size: the medians printed."""
    shares = [ServiceTelemetry(counted(sources), lambda: 0, {FORMAT: "JSON"}, directory,
                               index) for index in range(1, workers + 1)]
    for share in shares:
        share.publish()
    written, read = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        shares[0].publish()
        written.append(time.perf_counter() - started)
        started = time.perf_counter()
        shares[0].read()
        read.append(time.perf_counter() - started)
    size = (directory / "worker-1.json").stat().st_size
    print(f"{sources:>6} sources, {workers} workers: snapshot written in "
          f"{statistics.median(written) * 1e3:.2f} ms ({size / 1024:.0f} KiB), every "
          f"worker's read and summed in {statistics.median(read) * 1e3:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=31)
    options = parser.parse_args()
    for sources in (100, 1000, 10_000):
        with tempfile.TemporaryDirectory(prefix="bench-worker-counts-") as made:
            measure(sources, options.workers, options.rounds, Path(made))


if __name__ == "__main__":
    main()
