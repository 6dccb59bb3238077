"""Interleaved A/B of W1 and W3 (or W13: W1 over `serve --workers 2`) between a base
revision and the working tree.

    .venv/bin/python -m bench.ab --base HEAD~1 --rounds 4 --seconds 8

The base revision is exported with `git archive` into a temporary directory and served from
there (PYTHONPATH), the working tree from the checkout; both use this venv. Each round runs
both sides back to back, alternating which goes first, each over a fresh database, so drift
on this shared machine hits both alike. Prints the medians, every pair's ratio, and appends
one JSON line per round to bench/results/ab.jsonl.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

from bench import loadgen, systems
from bench.systems import TOKEN

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent

WORKLOADS: dict[str, tuple[str, int, int, dict[str, str]]] = {
    # name: (script, connections, samples per request, server environment)
    "W1": ("ingest_small.lua", 64, 2, {}),
    "W3": ("ingest_bulk.lua", 16, 1000, {}),
    "W13": ("ingest_small.lua", 64, 2, {"METRICS_WORKERS": "2"}),  # W1 over --workers 2
}


def export_revision(revision: str, into: Path) -> str:
    """The tree of `revision` under `into`; returns its short sha."""
    sha = subprocess.run(["git", "rev-parse", "--short", revision], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout.strip()
    archive = subprocess.run(["git", "archive", "--format=tar", revision], cwd=REPO,
                             check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return sha


def measure(side: Path, workload: str, seconds: float, run: int, workdir: Path) -> float:
    """Samples (W3) or requests (W1) per second of one fresh server of `side`'s code."""
    script, connections, per_request, env = WORKLOADS[workload]
    server = systems.metrics_ingest(workdir, env={"PYTHONPATH": str(side), **env})
    try:
        base = str(int(time.time()) - 60 * 86400 + run * 86400)
        result = loadgen.run_wrk(server.url, script, [TOKEN, base], connections, seconds)
    finally:
        server.stop()
    if result.non_2xx or result.socket_errors:
        print(f"    warning: {result.non_2xx} non-2xx, {result.socket_errors} socket errors")
    return result.rps * (per_request if workload == "W3" else 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="HEAD", help="revision to compare against")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--only", default="W1,W3")
    args = parser.parse_args()
    if not loadgen.wrk_available():
        sys.exit("bench.ab needs wrk (apt-get install wrk)")
    workloads = [name.strip().upper() for name in args.only.split(",") if name.strip()]
    head = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO, check=True,
                          capture_output=True, text=True).stdout.strip()
    results: dict[str, dict[str, list[float]]] = {w: {"base": [], "new": []} for w in workloads}
    with tempfile.TemporaryDirectory(prefix="mi-ab-") as tmp:
        root = Path(tmp)
        base_sha = export_revision(args.base, root / "base")
        sides = {"base": root / "base", "new": REPO}
        print(f"A/B: base {args.base} ({base_sha}) vs working tree ({head}), "
              f"{args.rounds} rounds x {args.seconds:g} s", flush=True)
        for round_number in range(args.rounds):
            order = ["base", "new"] if round_number % 2 == 0 else ["new", "base"]
            for workload in workloads:
                pair: dict[str, float] = {}
                for side in order:
                    workdir = root / f"{workload}-{side}-{round_number}"
                    workdir.mkdir()
                    pair[side] = measure(sides[side], workload, args.seconds, round_number,
                                         workdir)
                    results[workload][side].append(pair[side])
                print(f"  round {round_number + 1} {workload}: base {pair['base']:,.0f}  "
                      f"new {pair['new']:,.0f}  new/base {pair['new'] / pair['base']:.3f}",
                      flush=True)
                with (BENCH / "results" / "ab.jsonl").open("a") as out:
                    out.write(json.dumps({"base": base_sha, "new": head, "workload": workload,
                                          "round": round_number, "seconds": args.seconds,
                                          **pair}) + "\n")
    for workload in workloads:
        base = statistics.median(results[workload]["base"])
        new = statistics.median(results[workload]["new"])
        unit = "samples/s" if workload == "W3" else "req/s"
        print(f"{workload}: median base {base:,.0f} {unit}, new {new:,.0f} {unit}, "
              f"new/base {new / base:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
