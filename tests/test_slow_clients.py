"""Slow and broken clients: a trickled or abandoned body stalls nobody else; a client that
leaves before its answer still gets its committed samples kept, and leaves nothing behind."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web
from aiohttp.test_utils import TestClient

from metrics_ingest.config import Settings
from metrics_ingest.keys import WRITER
from tests.conftest import AUTH, TOKEN, poll, rows

Client = TestClient[web.Request, web.Application]
PUSH = {"source": "hpc", "metrics": {"slurm_pending_jobs": 1}}


async def open_raw(client: Client) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    assert client.server.host is not None
    assert client.server.port is not None
    return await asyncio.open_connection(client.server.host, client.server.port)


def request_head(length: int) -> bytes:
    return (f"POST /ingest HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n").encode()


async def test_trickled_body_stalls_nobody_and_times_out(
    make_client: Callable[[Settings], Any], settings: Settings
) -> None:
    client: Client = await make_client(settings.replace(body_timeout=1))
    body = orjson.dumps(PUSH)
    reader, writer = await open_raw(client)
    writer.write(request_head(len(body)) + body[:5])  # ... and the rest never comes
    await writer.drain()
    # Meanwhile everyone else is served at once.
    for i in range(20):
        push = {**PUSH, "timestamp": 1_790_000_000 + i}
        assert (await client.post("/ingest", json=push, headers=AUTH)).status == 200
    status_line = await asyncio.wait_for(reader.readline(), 10)
    assert status_line.startswith(b"HTTP/1.1 408")
    writer.close()
    await writer.wait_closed()


async def test_body_cut_off_mid_way(client: Client, settings: Settings) -> None:
    body = orjson.dumps(PUSH)
    _, writer = await open_raw(client)
    writer.write(request_head(len(body)) + body[:7])
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    assert (await client.post("/ingest", json=PUSH, headers=AUTH)).status == 200
    assert client.app[WRITER].alive
    assert rows(settings, "SELECT count(*) FROM samples") == [(1,)]


async def test_client_leaving_before_its_answer_keeps_its_samples(
    client: Client, settings: Settings
) -> None:
    blocker = sqlite3.connect(settings.db_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # stall the writer so the answer cannot come yet
    try:
        body = orjson.dumps({"source": "gone", "timestamp": 1_790_000_000,
                             "metrics": {"a": 1, "b": 2}})
        _, writer = await open_raw(client)
        writer.write(request_head(len(body)) + body)
        await writer.drain()
        app = client.app
        await poll(lambda: app[WRITER].in_flight == 2 or app[WRITER].queued_samples == 2)
        writer.close()  # the client gives up
        await writer.wait_closed()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    await poll(lambda: rows(settings, "SELECT count(*) FROM metrics"
                            " WHERE source = 'gone'") == [(2,)])
    # The service carries on; nothing is left waiting (filterwarnings=error would fail the
    # test on a pending task or an unretrieved exception at teardown).
    assert (await client.post("/ingest", json=PUSH, headers=AUTH)).status == 200
    assert client.app[WRITER].queued_samples == 0
