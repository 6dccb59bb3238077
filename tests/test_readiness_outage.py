"""Readiness follows the database, not only the last push: a replica that nobody pushed to
turns /readyz 503 within seconds of PostgreSQL going away, and 200 again once it is back, so
a load balancer stops sending it pushes before the first one fails."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from metrics_ingest.config import Settings
from tests.conftest import AUTH, TOKEN, PostgresServer


async def poll_status(client: Any, path: str, status: int, seconds: float) -> Any:
    """GET `path` until it answers `status` (its JSON body), within `seconds`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        response = await client.get(path)
        if response.status == status:
            return await response.json()
        assert loop.time() < deadline, f"{path} stayed {response.status}, not {status}"
        await asyncio.sleep(0.1)


async def test_idle_replica_turns_unready_while_postgres_is_down_and_back_after(
        make_client: Callable[[Settings], Any], tmp_path: Any,
        postgres: PostgresServer, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(db_path=tmp_path / "unused.db", auth_tokens=(TOKEN,),
                        db_url=postgres.new_database())
    caplog.set_level(logging.INFO)
    client = await make_client(settings)
    assert (await client.get("/readyz")).status == 200
    await asyncio.to_thread(postgres.cluster.stop, "fast")
    try:
        body = await poll_status(client, "/readyz", 503, seconds=15)
        assert body["error"] == "the database refuses writes"  # (details only with a token)
        with_token = await client.get("/readyz", headers=AUTH)
        assert "PostgreSQL" in (await with_token.json())["error"]
    finally:
        await asyncio.to_thread(postgres.cluster.start)
    await poll_status(client, "/readyz", 200, seconds=15)
    pushed = await client.post("/ingest", json={"source": "s", "metrics": {"m": 1}},
                               headers=AUTH)
    assert pushed.status == 200
    # Group expiry met the outage every second: said once, and its end once.
    expiry = [record.getMessage() for record in caplog.records
              if record.getMessage().startswith("group expiry")]
    assert len([line for line in expiry if "working again" not in line]) == 1, expiry
    await poll_log(caplog, "group expiry: working again")


async def poll_log(caplog: pytest.LogCaptureFixture, text: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not any(text in record.getMessage() for record in caplog.records):
        assert loop.time() < deadline, f"no log line {text!r}"
        await asyncio.sleep(0.1)
