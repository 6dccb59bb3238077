"""The cost of scoped tokens (issue 13), measured side by side in one run, interleaved run by
run:

- W15: W1 with a 1,000-entry METRICS_TOKENS_FILE (the pushing token is one entry, scoped to
  source patterns and rate-limited far above what W1 reaches, so the lookup, the scope check
  and the bucket all run per request) against W1 with METRICS_AUTH_TOKEN alone.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from bench import systems
from bench.plan import Plan, ts_base
from bench.scale_workloads import Start, interleaved, record
from bench.systems import TOKEN, Running

TOKENS_IN_FILE = 1000


def tokens_file(directory: Path) -> Path:
    """1,000 entries, the benchmark's token the last one (scoped to `hpc` and `hpc-*`)."""
    lines = []
    for number in range(TOKENS_IN_FILE - 1):
        digest = hashlib.sha256(f"cluster-{number}-token".encode()).hexdigest()
        lines += ["[[token]]", f'name = "cluster-{number}"', f'sha256 = "{digest}"',
                  f'sources = ["cluster-{number}", "cluster-{number}-*"]', ""]
    lines += ["[[token]]", 'name = "bench"',
              f'sha256 = "{hashlib.sha256(TOKEN.encode()).hexdigest()}"',
              'sources = ["hpc", "hpc-*"]', "rate = 10000000", ""]
    path = directory / "tokens.toml"
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path


def with_tokens_file(workdir: Path) -> Running:
    return systems.metrics_ingest(workdir, env={
        "METRICS_AUTH_TOKEN": "an-unused-env-token-for-w15",
        "METRICS_TOKENS_FILE": str(tokens_file(workdir))})


def w15(plan: Plan, peers_ok: bool) -> None:
    """W1 with a 1,000-entry tokens file against W1 without one."""
    print("W15 W1 with a 1,000-entry tokens file against without (64 connections)", flush=True)
    starts: dict[str, Start] = {"metrics-ingest": systems.metrics_ingest,
                                "metrics-ingest-tokens-file": with_tokens_file}
    runs = interleaved(plan, "w15", starts, "ingest_small.lua", lambda i: [TOKEN, ts_base(i)],
                       64)
    record(plan, "W15", runs, "req_per_s")
