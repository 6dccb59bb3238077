"""The framework's ceiling: an aiohttp server whose handler only reads and parses the JSON body.

Same event loop as metrics-ingest (uvloop when installed), no logging, no storage.
Run: python bench/bare_aiohttp.py --port 8800
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

import orjson
from aiohttp import web

OK = orjson.dumps({"status": "ok", "inserted": 0})


async def handle(request: web.Request) -> web.Response:
    payload = orjson.loads(await request.read())
    count = len(payload) if isinstance(payload, list) else 1
    return web.Response(body=OK if count else b"{}", content_type="application/json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application(client_max_size=10 * 1024 * 1024)
    app.router.add_post("/ingest", handle)
    factory = None
    with contextlib.suppress(ImportError):
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve(app, args.port))


async def serve(app: web.Application, port: int) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"listening on http://127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    main()
