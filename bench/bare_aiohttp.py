"""The framework's ceiling: an aiohttp server whose handler only reads and parses the JSON body.

Same event loop as metrics-ingest (uvloop when installed), no logging, no storage.
Run: python bench/bare_aiohttp.py --port 8800 [--processes 2]

With `--processes N`, N processes share the port (SO_REUSEPORT), as `serve --workers N`
does: W13's ceiling, what the framework alone gains from a second process on this machine.
Each process prints "listening" once it accepts; SIGTERM stops them all.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import signal
import sys

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
    parser.add_argument("--processes", type=int, default=1)
    args = parser.parse_args()
    if args.processes == 1:
        run(args.port, reuse_port=False)
        return
    children = [multiprocessing.Process(target=run, args=(args.port, True))
                for _ in range(args.processes)]

    def stop(signum: int, frame: object) -> None:
        for child in children:
            if child.pid is not None:
                child.terminate()
        for child in children:
            if child.pid is not None:
                child.join(5)
        sys.exit(0)

    # (before any child starts: a SIGTERM from then on stops those already running)
    signal.signal(signal.SIGTERM, stop)
    for child in children:
        child.start()
    for child in children:
        child.join()


def run(port: int, reuse_port: bool) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # (a forked child: not the parent's handler)
    app = web.Application(client_max_size=10 * 1024 * 1024)
    app.router.add_post("/ingest", handle)
    factory = None
    with contextlib.suppress(ImportError):
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve(app, port, reuse_port))


async def serve(app: web.Application, port: int, reuse_port: bool) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, reuse_port=reuse_port).start()
    print(f"listening on http://127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    main()
