"""What the status page costs on the server: `GET /` for 1,000 sources (each with three
series and pushes in two formats, 200 Pushgateway-API groups, refusals for 100 sources),
timed from the handler's call to its answer (the store reads on their thread and the HTML),
and `GET /sources/<name>` for one of them; median of rounds. The bar (issue 15): the page
for 1,000 sources in at most 200 ms.

    .venv/bin/python -m bench.status_page [--sources 1000] [--rounds 21]

Appends one JSON line to bench/results/status_page.jsonl.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from metrics_ingest.app import create_app, server_options
from metrics_ingest.config import Settings
from metrics_ingest.http.status_page import overview, source

BENCH = Path(__file__).resolve().parent
TOKEN = "bench-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def fill(client: TestClient[web.Request, web.Application], sources: int) -> None:
    for number in range(sources):
        name = f"node{number:04d}"
        if number % 2:
            response = await client.post(f"/write?db={name}&precision=s", headers=AUTH,
                                         data=f"cpu,core=all usage={number % 97}\n"
                                              f"mem used={number % 89},free={number % 83}\n")
        else:
            response = await client.post("/ingest", headers=AUTH, json={
                "source": name, "labels": {"rack": f"r{number % 20}"},
                "metrics": {"load1": number % 7, "jobs": number % 13, "up": 1}})
        assert response.status in (200, 204), await response.text()
        if number % 5 == 0:
            response = await client.put(f"/metrics/job/{name}/instance/i{number}",
                                        headers=AUTH, data="batch_ok 1\n")
            assert response.status == 200
        if number % 10 == 0:
            response = await client.post("/ingest", headers=AUTH,
                                         json={"source": name, "metrics": {}})
            assert response.status == 400


async def timed(handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                app: web.Application, path: str, rounds: int) -> tuple[float, int]:
    """Median milliseconds of `handler` answering GET `path`, and the body's size."""
    times = []
    size = 0
    for _ in range(rounds):
        request = make_mocked_request("GET", path, app=app,
                                      match_info={"name": path.rsplit("/", 1)[-1]})
        started = time.perf_counter()
        response = await handler(request)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status == 200
        assert isinstance(response, web.Response)
        assert isinstance(response.body, bytes)
        size = len(response.body)
    return statistics.median(times), size


async def measure(sources: int, rounds: int) -> dict[str, float | int]:
    with tempfile.TemporaryDirectory(prefix="mi-status-") as tmp:
        settings = Settings(db_path=Path(tmp) / "metrics.db", auth_tokens=(TOKEN,),
                            log_level="WARNING")
        app = create_app(settings)
        server = TestServer(app)
        await server.start_server(**server_options(app))
        client: TestClient[web.Request, web.Application] = TestClient(server)
        await client.start_server()
        try:
            started = time.perf_counter()
            await fill(client, sources)
            print(f"filled {sources} sources in {time.perf_counter() - started:.1f} s")
            page_ms, page_bytes = await timed(overview, app, "/", rounds)
            source_ms, source_bytes = await timed(source, app, "/sources/node0010", rounds)
        finally:
            await client.close()
    return {"page_ms": round(page_ms, 2), "page_bytes": page_bytes,
            "source_ms": round(source_ms, 2), "source_bytes": source_bytes}


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--sources", type=int, default=1000)
    options.add_argument("--rounds", type=int, default=21)
    args = options.parse_args()
    result = asyncio.run(measure(args.sources, args.rounds))
    print(f"GET /                  {result['page_ms']:7.1f} ms median, "
          f"{result['page_bytes']:,} bytes ({args.sources} sources)")
    print(f"GET /sources/node0010  {result['source_ms']:7.1f} ms median, "
          f"{result['source_bytes']:,} bytes")
    sha = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=BENCH.parent,
                         capture_output=True, text=True, check=False).stdout.strip()
    with (BENCH / "results" / "status_page.jsonl").open("a") as out:
        out.write(json.dumps({"sha": sha, "time": time.time(), "sources": args.sources,
                              "rounds": args.rounds, **result}) + "\n")


if __name__ == "__main__":
    main()
