"""Waits on PostgreSQL are bounded, as SQLite's busy timeout bounds them on a file: a table
locked from outside (an operator's `LOCK TABLE`, a migration's DDL) gets pushes a 503 after
5 s, not a wait as long as the lock (/readyz stays 200: the database answers, and every
replica meets the same lock); the lock gone, pushes are stored again with no restart. A
failing writer says so once and its end once."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import psycopg
import pytest

from metrics_ingest.config import Settings
from metrics_ingest.keys import READER
from tests.conftest import AUTH, TOKEN, PostgresServer


async def test_a_table_locked_from_outside_gets_503_after_5_s_and_recovers(
        make_client: Any, postgres: PostgresServer, tmp_path: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="metrics_ingest.writer")
    url = postgres.new_database()
    client = await make_client(Settings(db_path=tmp_path / "unused.db", auth_tokens=(TOKEN,),
                                        db_url=url))
    push = {"source": "rack7", "metrics": {"node_load1": 1.0}}
    assert (await client.post("/ingest", json=push, headers=AUTH)).status == 200
    blocker = await asyncio.to_thread(psycopg.connect, url)
    try:
        await asyncio.to_thread(blocker.execute, "LOCK TABLE latest IN EXCLUSIVE MODE")
        for value in (2.0, 3.0):
            started = time.monotonic()
            response = await client.post("/ingest", headers=AUTH,
                                         json={**push, "metrics": {"node_load1": value}})
            waited = time.monotonic() - started
            assert response.status == 503, await response.text()
            assert response.headers["Retry-After"]
            assert "lock timeout" in (await response.json())["error"]
            assert 4 < waited < 15  # the lock timeout (5 s), not the lock's whole length
    finally:
        await asyncio.to_thread(blocker.close)
    response = await client.post("/ingest", headers=AUTH,
                                 json={**push, "metrics": {"node_load1": 4.0}})
    assert response.status == 200, await response.text()
    assert (await client.get("/readyz")).status == 200
    said = [(record.levelno, record.getMessage()) for record in caplog.records
            if record.name == "metrics_ingest.writer"]
    assert [level for level, _ in said] == [logging.ERROR, logging.INFO]
    assert said[0][1].startswith("writer: a batch failed, its 1 pushes answered 503: "
                                 "PostgreSQL: canceling statement due to lock timeout")
    assert "\n" not in said[0][1]
    assert said[1][1] == "writer: working again after 2 failures"


async def test_reads_are_planned_for_their_values_every_time(
        make_client: Any, postgres: PostgresServer, tmp_path: Any) -> None:
    """/api/metrics?source= ran in 0.03 s for 10 calls, then 5-9 s from the 11th on (9,000
    series of the source among 24,000): psycopg prepared the statement, and PostgreSQL then
    chose one generic plan for every value of its optional filters. Every read connection
    now asks for a plan for each call's values, and bounds its lock waits."""
    url = postgres.new_database()
    client = await make_client(Settings(db_path=tmp_path / "unused.db", auth_tokens=(TOKEN,),
                                        db_url=url))
    push = {"source": "rack7", "metrics": {"node_load1": 1.0}}
    assert (await client.post("/ingest", json=push, headers=AUTH)).status == 200
    for _ in range(12):
        response = await client.get("/api/metrics?source=rack7&limit=5", headers=AUTH)
        assert response.status == 200
    conn = client.app[READER].conn
    assert conn is not None
    for setting, value in (("plan_cache_mode", "force_custom_plan"), ("lock_timeout", "5s"),
                           ("default_transaction_read_only", "on")):
        row = await (await conn.execute(f"SHOW {setting}")).fetchone()
        assert row == (value,), setting
