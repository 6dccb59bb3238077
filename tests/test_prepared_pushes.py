"""Pushes bigger than a batch have their series made ahead, a slice at a time between other
batches (store/preparing.py): stored whole all the same, refused whole over a budget with
nothing left behind, and correct when series are deleted while one is prepared."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from metrics_ingest import retention
from metrics_ingest.config import Settings
from metrics_ingest.keys import TELEMETRY, WRITER
from metrics_ingest.model import OverBudget, Push, SampleGroup
from metrics_ingest.store import WriteSession, open_store, preparing
from metrics_ingest.store.budgets import SeriesLimits
from tests.conftest import AUTH, TOKEN, Clock, poll, rows

Client = TestClient[web.Request, web.Application]
NOW = 1_795_000_000


def line_protocol(jobs: int, stamp: int = NOW) -> str:
    """Job-level lines as Telegraf's slurm input would send them: one series set per job."""
    return "".join(f"slurm_job,partition=p{job % 3},job_id={job} cpu={job}i,mem={job}.5 {stamp}\n"
                   for job in range(jobs))


async def write(client: Client, body: str, db: str = "hpc") -> Any:
    return await client.post(f"/write?db={db}&precision=s", data=body, headers=AUTH)


@pytest.fixture(autouse=True)
def small_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preparing, "SLICE_SERIES", 16)


async def test_a_push_bigger_than_a_batch_is_stored_whole(
        make_client: Callable[[Settings], Any], settings: Settings, clock: Clock) -> None:
    clock.pinned = NOW
    client: Client = await make_client(settings.replace(batch_max_samples=50))
    assert (await write(client, line_protocol(300))).status == 204
    assert rows(settings, "SELECT count(*) FROM series") == [(600,)]
    assert rows(settings, "SELECT count(*) FROM samples") == [(600,)]
    assert rows(settings, "SELECT count(*) FROM latest") == [(600,)]
    answer = await (await client.get("/api/v1/query", params={
        "query": 'slurm_job_cpu{job_id="299"}', "time": str(NOW)})).json()
    assert answer["data"]["result"][0]["value"] == [NOW, "299"]
    # Pushed again (every series known now): the same rows, values replaced.
    assert (await write(client, line_protocol(300).replace("cpu=", "cpu=1"))).status == 204
    assert rows(settings, "SELECT count(*) FROM series") == [(600,)]
    assert rows(settings, "SELECT metric_value FROM metrics WHERE metric_name = ? AND labels = ?",
                ("slurm_job_cpu", '{"job_id":"299","partition":"p2"}')) == [(1299.0,)]


async def test_over_budget_it_is_refused_whole_and_leaves_no_series(
        make_client: Callable[[Settings], Any], settings: Settings, clock: Clock) -> None:
    clock.pinned = NOW
    client: Client = await make_client(settings.replace(batch_max_samples=50,
                                                        max_series_per_source=500))
    assert (await write(client, line_protocol(10))).status == 204
    refused = await write(client, line_protocol(300, NOW + 10))  # 600 series: 16 a slice
    assert refused.status == 422
    assert "METRICS_MAX_SERIES_PER_SOURCE" in (await refused.json())["error"]

    def back_to_before() -> bool:  # (the slices made before the refusal are removed)
        return rows(settings, "SELECT count(*) FROM series") == [(20,)]

    await poll(back_to_before)
    assert rows(settings, "SELECT count(*) FROM samples") == [(20,)]
    assert rows(settings, "SELECT max(timestamp) FROM samples") == [(NOW,)]
    # The budget counts only what is stored: 480 more series still fit.
    assert (await write(client, line_protocol(250, NOW + 20))).status == 204
    assert rows(settings, "SELECT count(*) FROM series") == [(500,)]


def write_session(path: Path, limits: SeriesLimits | None = None) -> WriteSession:
    """The writer's session on a fresh SQLite file (the tests call it as the writer would)."""
    store = open_store(path, limits=limits)
    store.migrate()
    return store.open_writer("normal")


def job_groups(jobs: range, stamp: int) -> list[SampleGroup]:
    return [SampleGroup("hpc", f'{{"job_id":"{job}"}}', stamp, ["cpu", "mem"], [job, job / 2])
            for job in jobs]


async def test_other_batches_commit_between_the_slices(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    session = write_session(tmp_path / "m.db", SeriesLimits(10_000, 10_000))
    big = Push(job_groups(range(100), NOW), 200, time.time(), loop.create_future())
    slices = 0
    while not session.prepare(big):
        slices += 1
        small = Push(job_groups(range(1000 + slices, 1001 + slices), NOW), 2, time.time(),
                     loop.create_future())
        session.commit([small])  # between two slices of the big push
    assert slices == 100 * 2 // 16
    before = rows(tmp_path / "m.db", "SELECT max(id) FROM series")
    assert rows(tmp_path / "m.db", "SELECT count(*) FROM samples") == [(2 * slices,)]
    session.commit([big])
    assert rows(tmp_path / "m.db", "SELECT max(id) FROM series") == before  # none made now
    assert rows(tmp_path / "m.db",
                "SELECT count(*) FROM samples x JOIN series s ON s.id = x.series_id") == [
        (2 * slices + 200,)]
    session.close()


async def test_series_deleted_while_prepared_are_made_again(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    path = tmp_path / "m.db"
    session = write_session(path)
    big = Push(job_groups(range(40), NOW), 80, time.time(), loop.create_future())
    while not session.prepare(big):
        pass
    with sqlite3.connect(path) as other:  # another process deletes some of them meanwhile
        other.execute("DELETE FROM series WHERE id <= 10")
    other.close()
    session.commit([big])
    assert rows(path, "SELECT count(*) FROM samples x JOIN series s ON s.id = x.series_id") == [
        (80,)]
    assert rows(path, "SELECT count(*) FROM series") == [(80,)]
    session.close()


async def test_a_refused_preparation_raises_over_budget(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    session = write_session(tmp_path / "m.db", SeriesLimits(50, 10_000))
    big = Push(job_groups(range(40), NOW), 80, time.time(), loop.create_future())
    assert not session.prepare(big)
    assert not session.prepare(big)
    assert not session.prepare(big)  # 48 series made, and the next 16 do not fit
    with pytest.raises(OverBudget, match="budget of 50"):
        session.prepare(big)
    assert big.prepared is not None
    assert rows(tmp_path / "m.db", "SELECT count(*) FROM series") == [(48,)]  # three slices
    session.unprepare(preparing.unused(big))
    assert big.prepared is None
    assert rows(tmp_path / "m.db", "SELECT count(*) FROM series") == [(0,)]
    session.close()


async def test_series_left_by_a_crash_while_preparing_go_at_the_purge(
        make_client: Callable[[Settings], Any], tmp_path: Path, clock: Clock) -> None:
    """SQLite only: PostgreSQL resolves series inside the commit."""
    settings = Settings(db_path=tmp_path / "metrics.db", auth_tokens=(TOKEN,))
    client: Client = await make_client(settings)
    clock.pinned = NOW
    assert (await write(client, line_protocol(2))).status == 204
    with sqlite3.connect(settings.db_path) as db:  # as a killed server leaves them
        db.execute("INSERT INTO series (id, metric_name, source, labels) VALUES"
                   " (100, 'made_ahead', 'hpc', '')")
    db.close()
    await retention.purge(client.app[WRITER], client.app[TELEMETRY], 7, NOW)
    assert rows(settings, "SELECT count(*) FROM series") == [(4,)]
    assert rows(settings, "SELECT count(*) FROM series WHERE metric_name = 'made_ahead'") == [
        (0,)]
