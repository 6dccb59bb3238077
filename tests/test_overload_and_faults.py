"""Overload and storage faults: 503 with a clear reason for what cannot be taken, readiness
reports it, nothing committed is lost, and the service recovers without a restart."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from metrics_ingest.config import Settings
from metrics_ingest.keys import TELEMETRY, WRITER
from tests.conftest import AUTH, Service, accept_writes, poll, refuse_writes, rows

Client = TestClient[web.Request, web.Application]
PUSH = {"source": "hpc", "metrics": {"slurm_pending_jobs": 1}}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def ready_again(client: Client) -> None:
    """Poll /readyz until it is 200 again (probes run at most every 2 s)."""
    statuses: list[int] = []

    async def ask() -> None:
        statuses.append((await client.get("/readyz")).status)

    deadline = time.monotonic() + 15
    while not statuses or statuses[-1] != 200:
        assert time.monotonic() < deadline, statuses[-5:]
        await ask()
        await asyncio.sleep(0.02)


async def get_json(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(url) as response:
        return response.status, await response.json()


@pytest.mark.slow
async def test_burst_beyond_the_queue(service_factory: Callable[..., Service]) -> None:
    service = service_factory(env={"METRICS_QUEUE_MAX_SAMPLES": "1000",
                                   "METRICS_BATCH_MAX_SAMPLES": "100"})
    baseline_rss = rss_mb(service.process.pid)
    # Stall the writer by holding the write lock (well inside its 5 s busy timeout).
    blocker = sqlite3.connect(service.db_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    peak_rss = baseline_rss
    try:
        async with aiohttp.ClientSession() as session:

            async def push(i: int) -> tuple[int, str | None, int]:
                body = {"source": "burst", "timestamp": 1_790_000_000 + i,
                        "metrics": {f"m{j}": j for j in range(50)}}
                async with session.post(service.url + "/ingest", json=body,
                                        headers=AUTH) as response:
                    await response.read()
                    return response.status, response.headers.get("Retry-After"), i

            tasks = [asyncio.create_task(push(i)) for i in range(200)]
            # Those that do not fit are answered at once, while the writer is still stalled.
            refused = [t for t in asyncio.as_completed(tasks)]
            early = [await refused[k] for k in range(150)]
            assert all(status == 503 and retry == "1" for status, retry, _ in early)
            status, body = await get_json(session, service.url + "/readyz")
            assert status == 503
            assert body["error"].startswith("overloaded")
            peak_rss = max(peak_rss, rss_mb(service.process.pid))
            blocker.execute("ROLLBACK")
            rest = [await refused[k] for k in range(150, 200)]
            results = early + rest
            accepted = sorted(i for status, _, i in results if status == 200)
            assert 21 <= len(accepted) <= 22  # 1,000 queued + the batch the writer held (1-2)
            # It recovers by itself.
            await poll(lambda: True)
            status, _ = await get_json(session, service.url + "/readyz")
            assert status == 200
            async with session.post(service.url + "/ingest", json=PUSH, headers=AUTH) as r:
                assert r.status == 200
            async with session.get(service.url + "/metrics") as r:
                text = await r.text()
            assert 'metrics_ingest_rejected_pushes_total{reason="overload",source="burst"} ' \
                   f"{200 - len(accepted)}" in text
    finally:
        if blocker.in_transaction:
            blocker.execute("ROLLBACK")
        blocker.close()
    stored = rows(service.db_path, "SELECT DISTINCT timestamp - 1790000000 FROM metrics"
                  " WHERE source = 'burst' ORDER BY 1")
    assert [row[0] for row in stored] == accepted
    print(f"burst: {len(accepted)} of 200 accepted, RSS {baseline_rss:.0f} -> "
          f"{peak_rss:.0f} MB")
    assert peak_rss - baseline_rss < 50


async def test_read_only_database_gets_503_and_recovers(client: Client) -> None:
    assert (await client.post("/ingest", json=PUSH, headers=AUTH)).status == 200
    conn = client.app[WRITER]
    word = await conn.call(refuse_writes)  # writes are refused from now on
    response = await client.post("/ingest", json={**PUSH, "timestamp": 1_790_000_000},
                                 headers=AUTH)
    assert response.status == 503
    assert word in (await response.json())["error"]
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert (await ready.json())["error"] == "the database refuses writes"  # no internals...
    detailed = await client.get("/readyz", headers=AUTH)
    assert "refuses writes: " in (await detailed.json())["error"]  # ... but for a token
    assert word in (await detailed.json())["error"]
    assert client.app[WRITER].alive
    await conn.call(accept_writes)
    # Readiness comes back by probing (at most every 2 s), before any push succeeds.
    await ready_again(client)
    assert (await client.post("/ingest", json=PUSH, headers=AUTH)).status == 200
    assert client.app[TELEMETRY].rejected_pushes[(("reason", "storage"), ("source", "hpc"))] == 1


async def test_full_database_readiness_probes_growth(
        make_client: Callable[[Settings], Any], sqlite_settings: Settings) -> None:
    client = await make_client(sqlite_settings)  # a full disk, as SQLite sees one
    conn = client.app[WRITER]
    await conn.call(lambda session: session.db.execute("PRAGMA max_page_count = 1"))
    big = {"source": "hpc", "metrics": {f"m{i}": i for i in range(3000)}}
    assert (await client.post("/ingest", json=big, headers=AUTH)).status == 503
    ready = await client.get("/readyz", headers=AUTH)
    assert ready.status == 503
    assert "full" in (await ready.json())["error"]
    await conn.call(lambda session: session.db.execute("PRAGMA max_page_count = 1073741823"))
    await ready_again(client)
    assert (await client.post("/ingest", json=big, headers=AUTH)).status == 200


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Callable[[str], None]]:
    """A size-limited tmpfs (a really full disk), or a skip where mounting is not allowed."""
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); the full-disk "
                    "path is covered by the max_page_count test")

    def resize(new_size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={new_size}", str(path)], check=True)

    try:
        yield resize
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("mount") is None, reason="no mount command")
async def test_really_full_disk(tmp_path: Path,
                                service_factory: Callable[..., Service]) -> None:
    disk = tmp_path / "disk"
    with small_tmpfs(disk, "600k") as resize:
        service = service_factory(args=("--db", str(disk / "metrics.db")))
        acked: list[int] = []
        async with aiohttp.ClientSession() as session:
            status = 200
            for i in range(2000):
                body = {"source": "disk", "timestamp": 1_790_000_000 + i,
                        "metrics": {f"m{j}": i for j in range(100)}}
                async with session.post(service.url + "/ingest", json=body,
                                        headers=AUTH) as response:
                    status = response.status
                    error = (await response.json()).get("error", "")
                if status != 200:
                    break
                acked.append(i)
            assert status == 503, "the disk never filled"
            assert "full" in error
            ready_status, ready = await get_json(session, service.url + "/readyz")
            assert ready_status == 503
            resize("64m")
            deadline = time.monotonic() + 15
            while ready_status != 200 and time.monotonic() < deadline:
                ready_status, ready = await get_json(session, service.url + "/readyz")
            assert ready_status == 200, ready
            async with session.post(service.url + "/ingest", json=PUSH, headers=AUTH) as r:
                assert r.status == 200
        service.process.terminate()
        assert service.process.wait(10) == 0
        stored = rows(disk / "metrics.db", "SELECT DISTINCT timestamp - 1790000000 FROM metrics"
                      " WHERE source = 'disk' ORDER BY 1")
        assert [row[0] for row in stored] == acked
        print(f"full disk: {len(acked)} pushes acked before ENOSPC, all {len(stored)} found")
