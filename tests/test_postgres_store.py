"""What only the PostgreSQL engine has: day partitions made on demand and dropped whole by
the purge (a pinned group member's newest sample survives it), and a password that never
reaches a log line or an error message."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from metrics_ingest import retention
from metrics_ingest.config import Settings
from metrics_ingest.keys import TELEMETRY, WRITER
from metrics_ingest.store import StorageError, open_store
from metrics_ingest.store.postgres.connection import KEEPALIVES, bounded_waits, defaults
from metrics_ingest.store.postgres.sql import PARTITION_LOCK
from tests.conftest import AUTH, TOKEN, PostgresServer, Service
from tests.pg_cluster import PASSWORD

Client = TestClient[web.Request, web.Application]
DAY = 86400


def partitions(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [
            row[0]
            for row in conn.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = 'samples'::regclass ORDER BY 1"
            ).fetchall()
        ]


async def test_days_get_partitions_and_the_purge_drops_them_whole(
    make_client: Callable[[Settings], Any], postgres: PostgresServer
) -> None:
    url = postgres.new_database()
    client: Client = await make_client(Settings(auth_tokens=(TOKEN,), db_url=url))
    now = int(time.time())
    today = now // DAY
    for age_days, count in ((12, 3), (10, 2), (0, 1)):
        stamp = now - age_days * DAY
        response = await client.post(
            "/ingest",
            headers=AUTH,
            json={
                "source": "hpc",
                "timestamp": stamp,
                "metrics": {f"m{i}": i for i in range(count)},
            },
        )
        assert response.status == 200
    # A weekly group's last push, 9 days old: exported until replaced, so never purged.
    response = await client.put(
        f"/metrics/job/weekly?timestamp={now - 9 * DAY}",
        data="weekly_last_success 1\n",
        headers=AUTH,
    )
    assert response.status == 200
    made = partitions(url)
    for day in (today - 12, today - 10, today - 9, today, today + 1):
        assert f"samples_d{day}" in made
    app = client.app
    assert await retention.purge(app[WRITER], app[TELEMETRY], 7, now) == 5
    left = partitions(url)
    assert f"samples_d{today - 12}" not in left
    assert f"samples_d{today - 10}" not in left
    assert f"samples_d{today - 9}" not in left  # (its pinned sample moved to the default)
    assert f"samples_d{today}" in left
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT metric_name FROM metrics ORDER BY 1").fetchall() == [
            ("m0",),
            ("weekly_last_success",),
        ]
    text = await (await client.get("/metrics")).text()
    assert 'weekly_last_success{source="weekly",instance="",job="weekly"} 1' in text
    assert await retention.purge(app[WRITER], app[TELEMETRY], 7, now) == 0


def test_the_password_is_never_logged(
    service_factory: Callable[..., Service], postgres: PostgresServer
) -> None:
    url = postgres.new_database()  # carries the password
    assert PASSWORD in url
    service = service_factory(db=url)
    service.process.terminate()
    service.process.wait(15)
    log = service.log()
    assert "listening on" in log
    assert "postgresql://postgres:***@127.0.0.1" in log
    assert PASSWORD not in log
    wrong = url.replace(PASSWORD, "not-the-password")
    with pytest.raises(StorageError, match="password authentication failed") as refused:
        open_store(wrong).migrate()
    assert "not-the-password" not in str(refused.value)


def backends(url: str, purpose: str) -> int:
    """The server's connections of `purpose` (the service names each in application_name)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                           (f"metrics-ingest {purpose}",)).fetchone()
        assert row is not None
        return int(row[0])


async def test_reads_and_drains_at_once_open_one_connection_each(
    postgres: PostgresServer,
) -> None:
    """A scrape's drain, the feed follower's and handlers' reads arrive together on a fresh
    server: each session opens one connection, none is left open for the GC to find."""
    url = postgres.new_database()
    store = open_store(url)
    store.migrate()
    reader = await store.open_reader()
    feed = store.open_feed()
    assert feed is not None
    try:
        counts = await asyncio.gather(*(reader.series_counts() for _ in range(8)))
        assert counts == [{}] * 8
        drained = await asyncio.gather(*(feed.drain() for _ in range(8)))
        assert sum(len(changes) for changes in drained) == 1  # one "read everything"
        assert backends(url, "reader") == 1
        assert backends(url, "change feed") == 1
    finally:
        await reader.close()
        await feed.close()
    assert backends(url, "reader") == 0
    assert backends(url, "change feed") == 0


async def test_a_url_that_names_its_application_and_timeout_keeps_them(
    make_client: Callable[[Settings], Any], postgres: PostgresServer
) -> None:
    """The service names its connections and gives them a 5 s connect timeout, unless the
    URL says otherwise: a site's own application_name (to find its replicas in
    pg_stat_activity) and connect_timeout are what the server sees."""
    url = postgres.new_database()
    named = f"{url}?application_name=site-a-ingest&connect_timeout=17"
    client: Client = await make_client(Settings(auth_tokens=(TOKEN,), db_url=named))
    response = await client.post("/ingest", headers=AUTH,
                                 json={"source": "hpc", "metrics": {"load": 1}})
    assert response.status == 200
    with psycopg.connect(url, autocommit=True) as conn:
        names = {row[0] for row in conn.execute(
            "SELECT application_name FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()").fetchall()}
    assert names == {"site-a-ingest"}
    assert defaults(named, "writer") == KEEPALIVES
    assert defaults(url, "writer") == {"connect_timeout": 5,
                                       "application_name": "metrics-ingest writer",
                                       **KEEPALIVES}
    # The waits' bounds, less those the URL's options set (tests/test_postgres_waits.py).
    assert bounded_waits(f"{url}?options=-c%20lock_timeout%3D10s", writes=True) == [
        "SET statement_timeout = '60s'"]
    assert bounded_waits(url, writes=False) == ["SET lock_timeout = '5s'"]



async def test_two_purges_at_once_share_the_work_without_failing(
    make_client: Callable[[Settings], Any], postgres: PostgresServer
) -> None:
    """`metrics-ingest purge` beside the scheduled one (or two servers'): each drops whole
    days and deletes the boundary chunks under the partition lock, so neither names a
    partition the other dropped ('relation "samples_d20788" does not exist', exit 1)."""
    url = postgres.new_database()
    client: Client = await make_client(Settings(auth_tokens=(TOKEN,), db_url=url))
    now = int(time.time())
    for age in range(8, 68):  # 60 expired days, a partition each, two samples a day
        response = await client.post("/ingest", headers=AUTH, json={
            "source": "hpc", "timestamp": now - age * DAY, "metrics": {"a": age, "b": age}})
        assert response.status == 200
    assert len(partitions(url)) >= 60
    deleted = await asyncio.gather(retention.purge_store(open_store(url), 7, now),
                                   retention.purge_store(open_store(url), 7, now))
    assert sum(deleted) == 120
    assert not [name for name in partitions(url)
                if name != "samples_default" and int(name[9:]) * DAY < now - 7 * DAY]


async def test_a_purge_the_database_refuses_says_so_in_one_line(
    postgres: PostgresServer,
) -> None:
    """`metrics-ingest purge` kept waiting past the lock timeout: exit 1 and
    one line naming what PostgreSQL said (a traceback before: the writer's StorageFailed
    went uncaught)."""
    url = postgres.new_database()
    blocker = await asyncio.to_thread(psycopg.connect, url)
    try:
        # The partition lock, as a server adding a day's partition holds it: the purge's
        # first chunk waits for it.
        await asyncio.to_thread(blocker.execute, "SELECT pg_advisory_xact_lock(%s)",
                                (PARTITION_LOCK,))
        done = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "metrics_ingest", "purge", "--days", "7",
                             "--db", url], capture_output=True, text=True, timeout=120)
    finally:
        await asyncio.to_thread(blocker.close)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert errors[-1].startswith("metrics-ingest: error: purge failed: ")
    assert "lock timeout" in errors[-1]
    assert PASSWORD not in done.stderr
