"""W11, big bodies: the p99 of small pushes sent while three 6 MB Influx bodies and a
300k-series remote_write are being parsed, against their p99 with nothing else going on.

    .venv/bin/python -m bench.bigbodies [--base REVISION]

With --base, the same workload also runs on that revision's code, in the same run, first.
bench/compare runs it as W11.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench import systems
from bench.ab import export_revision
from bench.cardinality import p99_ms, small_pushes
from bench.encode import snappy, write_request
from bench.systems import TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def influx_body(lines: int, stamp: int, offset: int) -> bytes:
    """About 6 MB of line protocol: job-level points, three fields each."""
    return "".join(f"job_usage,cluster=c{offset},job_id={i} cpu={i % 97}i,mem={i}.25,gpu={i % 3}i "
                   f"{stamp}\n" for i in range(lines)).encode()


def remote_write_body(series: int, stamp_ms: int) -> bytes:
    return snappy(write_request([({"__name__": "rw_cpu", "job": "s", "j": str(i)},
                                  [(float(i), stamp_ms)]) for i in range(series)]))


async def measure(url: str, bodies: list[tuple[str, str, bytes, dict[str, str]]]
                  ) -> dict[str, float]:
    out: dict[str, float] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=16)) as session:
        for phase in ("idle", "big"):
            stop = asyncio.Event()
            latencies: list[float] = []
            pushers = asyncio.create_task(small_pushes(session, url, stop, latencies))
            await asyncio.sleep(0.5)
            latencies.clear()
            started = time.perf_counter()
            if phase == "big":
                statuses = await asyncio.gather(*(
                    post(session, url + path, body, headers) for _, path, body, headers in bodies))
                out["big_bodies_seconds"] = time.perf_counter() - started
                out.update({f"status_{name}": float(status)
                            for (name, _, _, _), status in zip(bodies, statuses, strict=True)})
            else:
                await asyncio.sleep(3)
            stop.set()
            out[f"errors_{phase}"] = float(await pushers)
            out[f"small_push_p99_{phase}_ms"] = p99_ms(latencies)
            # The longest wait too: closed-loop pushers send little while one waits, so a
            # p99 alone can hide a stall of seconds (W11 at f05fd5b: p99 11 ms, max 8.1 s).
            out[f"small_push_max_{phase}_ms"] = 1000 * max(latencies, default=float("nan"))
            out[f"small_pushes_{phase}"] = float(len(latencies))
    out["p99_ratio"] = out["small_push_p99_big_ms"] / out["small_push_p99_idle_ms"]
    return out


async def post(session: aiohttp.ClientSession, url: str, body: bytes,
               headers: dict[str, str]) -> int:
    async with session.post(url, data=body, headers={**AUTH, **headers},
                            timeout=aiohttp.ClientTimeout(300)) as reply:
        await reply.read()
        return reply.status


def bodies(scale: float = 1.0) -> list[tuple[str, str, bytes, dict[str, str]]]:
    """Three ~6 MB Influx bodies and a 300k-series remote_write (`scale` shrinks them)."""
    stamp = int(time.time()) - 5
    out = [(f"influx{i}", f"/write?db=big{i}&precision=s",
            influx_body(int(85_000 * scale), stamp, i), {"Content-Type": "text/plain"})
           for i in range(3)]
    out.append(("remote_write", "/api/v1/write",
                remote_write_body(int(300_000 * scale), stamp * 1000),
                {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf"}))
    return out


def run(workdir: Path, code: Path | None, scale: float = 1.0) -> dict[str, float]:
    env = {"PYTHONPATH": str(code)} if code is not None else {}
    # A 6 MB body holds 255,000 fields: room for it, so the parse runs to its end.
    env["METRICS_QUEUE_MAX_SAMPLES"] = "1200000"
    env["METRICS_BATCH_MAX_SAMPLES"] = "10000"
    env["METRICS_MAX_BODY_BYTES"] = str(32 << 20)  # the remote_write inflates to 19 MB
    # 300,000 series from one Prometheus: beyond the default series budget of a source.
    env["METRICS_MAX_SERIES_PER_SOURCE"] = "1000000"
    server = systems.metrics_ingest(workdir, env=env)
    try:
        return asyncio.run(measure(server.url, bodies(scale)))
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", help="also measure this revision, first, in the same run")
    args = parser.parse_args()
    sizes = {name: len(body) for name, _, body, _ in bodies()}
    print(json.dumps({"body_bytes": sizes}), flush=True)
    with tempfile.TemporaryDirectory(prefix="mi-w11-") as tmp:
        root = Path(tmp)
        results = {}
        if args.base:
            export_revision(args.base, root / "base")
            (root / "w-base").mkdir()
            results["base"] = run(root / "w-base", root / "base")
            print(json.dumps({"base": args.base, **results["base"]}), flush=True)
        (root / "w-new").mkdir()
        results["new"] = run(root / "w-new", None)
        print(json.dumps({"new": "working tree", **results["new"]}), flush=True)
    for key in results["new"]:
        row = "  ".join(f"{side} {values.get(key, float('nan')):>10.2f}"
                        for side, values in results.items())
        print(f"{key:32} {row}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
