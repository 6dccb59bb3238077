"""`metrics-ingest db query` on either engine, beside a running server: the Worker's `metrics`
view read and deleted from, the count printed, the server's next read reflecting it; text
holding several statements refused before any runs; an engine's error on one line."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient

from metrics_ingest.config import Settings
from metrics_ingest.store import ONE_STATEMENT
from tests.conftest import AUTH, rows
from tests.test_cli import cli

Client = TestClient[web.Request, web.Application]


async def db_query(settings: Settings, sql: str, *flags: str
                   ) -> subprocess.CompletedProcess[str]:
    """The real command, off the loop the server in this test runs on."""
    return await asyncio.to_thread(cli, "db", "query", sql, "--db", settings.database, *flags,
                                   cwd=Path(settings.db_path).parent)


async def test_delete_through_the_view_is_counted_and_read_at_once(
        client: Client, settings: Settings) -> None:
    now = int(time.time())
    for push in ({"source": "hpc", "timestamp": now - 60,
                  "metrics": {"slurm_pending_jobs": 42, "slurm_running_jobs": 10}},
                 {"source": "hpc", "timestamp": now - 30, "metrics": {"slurm_pending_jobs": 40}}):
        assert (await client.post("/ingest", json=push, headers=AUTH)).status == 200
    listed = await db_query(settings, "SELECT source, timestamp, metric_name, metric_value "
                            "FROM metrics ORDER BY timestamp, metric_name", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == [
        {"source": "hpc", "timestamp": now - 60, "metric_name": "slurm_pending_jobs",
         "metric_value": 42.0},
        {"source": "hpc", "timestamp": now - 60, "metric_name": "slurm_running_jobs",
         "metric_value": 10.0},
        {"source": "hpc", "timestamp": now - 30, "metric_name": "slurm_pending_jobs",
         "metric_value": 40.0}]
    assert 'slurm_pending_jobs{source="hpc"} 40' in await (await client.get("/metrics")).text()

    deleted = await db_query(settings, "DELETE FROM metrics WHERE metric_name = "
                             "'slurm_pending_jobs'")
    assert (deleted.returncode, deleted.stdout) == (0, "2 rows changed\n"), deleted.stderr
    api = await (await client.get("/api/metrics", params={"window": "1h"})).json()
    assert [row["metric_name"] for row in api] == ["slurm_running_jobs"]
    assert "slurm_pending_jobs{" not in await (await client.get("/metrics")).text()
    # Pushing goes on as before.
    again = {"source": "hpc", "timestamp": now, "metrics": {"slurm_pending_jobs": 7}}
    assert (await client.post("/ingest", json=again, headers=AUTH)).status == 200
    assert 'slurm_pending_jobs{source="hpc"} 7' in await (await client.get("/metrics")).text()


async def test_several_statements_run_none(client: Client, settings: Settings) -> None:
    push = {"source": "hpc", "metrics": {"slurm_pending_jobs": 42}}
    assert (await client.post("/ingest", json=push, headers=AUTH)).status == 200
    for text in ("DELETE FROM metrics; SELECT 1",
                 "SELECT count(*) FROM metrics; DELETE FROM metrics"):
        refused = await db_query(settings, text)
        assert refused.returncode == 1
        assert refused.stderr == f"metrics-ingest: error: {ONE_STATEMENT}\n"
    assert rows(settings, "SELECT count(*) FROM metrics") == [(1,)]
    for text in ("", " ;\n"):
        empty = await db_query(settings, text)
        assert (empty.returncode, empty.stderr) == (
            2, "metrics-ingest: error: db query needs a statement, got none\n")
    # One statement with a trailing semicolon is one statement.
    counted = await db_query(settings, "SELECT count(*) AS n FROM metrics; ", "--json")
    assert json.loads(counted.stdout) == [{"n": 1}], counted.stderr


async def test_the_engine_s_error_is_one_line(client: Client, settings: Settings) -> None:
    bad = await db_query(settings, "SELEC nonsense")
    assert bad.returncode == 1
    assert bad.stderr.startswith("metrics-ingest: error: ")
    assert bad.stderr.count("\n") == 1
    assert "syntax error" in bad.stderr
    missing = await db_query(settings, "SELECT * FROM no_such_table")
    assert missing.returncode == 1
    assert missing.stderr.count("\n") == 1
    assert "no_such_table" in missing.stderr


async def test_maintenance_statements_run(client: Client, settings: Settings) -> None:
    """What runs only outside a transaction block runs (VACUUM; on PostgreSQL an index built
    CONCURRENTLY), and a % in a statement is the statement's own."""
    statements = ["VACUUM"] if settings.db_url is None else [
        "VACUUM latest", "CREATE INDEX CONCURRENTLY scratch_index ON sources (newest)",
        "DROP INDEX CONCURRENTLY scratch_index", "SET work_mem = '8MB'"]
    for statement in statements:
        done = await db_query(settings, statement)
        assert done.returncode == 0, (statement, done.stderr)
    percent = await db_query(settings, "SELECT '100%' AS share", "--json")
    assert json.loads(percent.stdout) == [{"share": "100%"}], percent.stderr
