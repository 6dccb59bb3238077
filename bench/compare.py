"""Side-by-side comparison of metrics-ingest with its peers, workloads W1-W15 (see
bench/README.md).

Run through `bench/compare` (which prepares the venv); `--quick` is a seconds-long smoke.
Each result is appended as a JSON line to bench/results/, then RESULTS.md and the plot are
regenerated from all lines of the newest run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench import loadgen, report
from bench.plan import BENCH, RESULTS, Plan, ensure_peers, git_sha
from bench.push_workloads import w1, w2, w3, w8
from bench.query_workloads import w9
from bench.read_workloads import w4, w5, w6, w10, w11
from bench.scale_workloads import w12, w13, w14
from bench.tenant_workloads import w15

WORKLOADS: dict[str, Callable[[Plan, bool], None]] = {
    "W1": w1, "W2": w2, "W3": w3, "W4": w4, "W5": w5, "W6": w6, "W8": w8, "W9": w9, "W10": w10,
    "W11": w11, "W12": w12, "W13": w13, "W14": w14, "W15": w15,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    parser.add_argument("--seconds", type=float, help="load duration per run (default 10)")
    parser.add_argument("--repeat", type=int, help="runs per measurement (median; default 3)")
    parser.add_argument("--only", default="", help="comma-separated workloads, e.g. W1,W3")
    parser.add_argument("--no-save", action="store_true",
                        help="do not append to bench/results/ or rewrite RESULTS.md")
    args = parser.parse_args()
    missing = ensure_peers()
    if missing:
        print(f"peers unavailable (not installed): {', '.join(missing)}; measuring "
              "metrics-ingest alone", flush=True)
    run_id = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    with tempfile.TemporaryDirectory(prefix="mi-bench-") as tmp:
        plan = Plan(quick=args.quick, seconds=args.seconds or (1.0 if args.quick else 10.0),
                    repeat=args.repeat or (1 if args.quick else 3), root=Path(tmp),
                    run_id=run_id, only={w.strip().upper() for w in args.only.split(",") if w})
        meta = {"run": run_id, "git": git_sha(), "quick": plan.quick, "seconds": plan.seconds,
                "repeat": plan.repeat, "python": platform.python_version(),
                "cpus": os.cpu_count(), "generator": "wrk" if loadgen.wrk_available()
                else "python-aiohttp", "peers_missing": missing, "only": sorted(plan.only)}
        print(json.dumps(meta), flush=True)
        peers_ok = not missing
        for name, workload in WORKLOADS.items():
            if plan.wants(name):
                workload(plan, peers_ok)
    if args.no_save:
        return 0
    RESULTS.mkdir(exist_ok=True)
    target = RESULTS / ("quick.jsonl" if plan.quick else f"{run_id[:8]}.jsonl")
    with target.open("a") as out:
        out.write(json.dumps({"meta": meta}) + "\n")
        for row in plan.results:
            out.write(json.dumps(row) + "\n")
    if not plan.quick and not plan.only:  # RESULTS.md is one whole run's
        report.write(RESULTS, BENCH / "RESULTS.md", BENCH / "results.png")
    print(f"results appended to {target.relative_to(BENCH.parent)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
