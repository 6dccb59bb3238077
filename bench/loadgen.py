"""Load generation: wrk with the Lua scripts in bench/wrk/, or a Python aiohttp generator when
wrk is missing. Both report requests, errors and latency percentiles, and how much CPU the
generator itself used (to show it is not the bottleneck)."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

WRK_DIR = Path(__file__).resolve().parent / "wrk"


@dataclass
class LoadResult:
    requests: int
    seconds: float
    non_2xx: int
    socket_errors: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    generator_cpu_pct: float  # of one core, over the run
    generator: str

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def as_dict(self) -> dict[str, float | int | str]:
        return {**asdict(self), "rps": round(self.rps, 1)}


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(url: str, script: str, args: list[str], connections: int, seconds: float,
            timeout_s: int = 10) -> LoadResult:
    """wrk -t1 with `script` + the shared report; bounded in time by wrk's own duration."""
    handle, name = tempfile.mkstemp(prefix=f".{script}.", suffix=".lua", dir=WRK_DIR)
    os.close(handle)
    combined = Path(name)  # one per run: several wrk may run side by side
    combined.write_text((WRK_DIR / script).read_text() + "\n" +
                        (WRK_DIR / "report.lua").read_text())
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    output = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
         f"--timeout={timeout_s}s", "-s", str(combined), url, "--", *args],
        capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    combined.unlink()
    line = next(line for line in output.splitlines() if line.startswith("WRKJSON "))
    data = json.loads(line.removeprefix("WRKJSON "))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return LoadResult(
        requests=data["requests"], seconds=data["duration_us"] / 1e6,
        non_2xx=data["non_2xx"], socket_errors=data["socket_errors"],
        p50_ms=data["latency_p50_us"] / 1000, p99_ms=data["latency_p99_us"] / 1000,
        max_ms=data["latency_max_us"] / 1000,
        generator_cpu_pct=round(100 * cpu / wall, 1), generator="wrk")


@dataclass
class HttpRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


async def python_load(url: str, make_request: object, connections: int,
                      seconds: float) -> LoadResult:
    """The fallback generator: `connections` keep-alive workers for `seconds`."""
    import aiohttp

    latencies: list[float] = []
    errors = {"non_2xx": 0, "socket": 0}
    deadline = time.monotonic() + seconds
    counter = iter(range(10**12))
    build = make_request  # callable(n) -> HttpRequest

    async def worker(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < deadline:
            request: HttpRequest = build(next(counter))  # type: ignore[operator]
            started = time.perf_counter()
            try:
                async with session.request(request.method, url + request.path,
                                           headers=request.headers, data=request.body) as resp:
                    await resp.read()
                    if resp.status >= 300:
                        errors["non_2xx"] += 1
            except aiohttp.ClientError:
                errors["socket"] += 1
            latencies.append(time.perf_counter() - started)

    cpu_before = time.process_time()
    started = time.monotonic()
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(connections)))
    wall = time.monotonic() - started
    latencies.sort()
    return LoadResult(
        requests=len(latencies), seconds=wall, non_2xx=errors["non_2xx"],
        socket_errors=errors["socket"],
        p50_ms=1000 * statistics.median(latencies) if latencies else 0.0,
        p99_ms=1000 * latencies[int(len(latencies) * 0.99)] if latencies else 0.0,
        max_ms=1000 * latencies[-1] if latencies else 0.0,
        generator_cpu_pct=round(100 * (time.process_time() - cpu_before) / wall, 1),
        generator="python-aiohttp")
