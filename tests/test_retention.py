"""The retention purge: chunked deletes through the writer, the cron job, and the CLI beside a
running server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from metrics_ingest import retention
from metrics_ingest.config import Settings
from metrics_ingest.keys import TELEMETRY, WRITER
from metrics_ingest.model import Push, SampleGroup
from metrics_ingest.store import open_store
from metrics_ingest.store.sqlite import session
from metrics_ingest.telemetry import Telemetry
from metrics_ingest.writer import Writer
from tests.conftest import AUTH, poll, rows

Client = TestClient[web.Request, web.Application]
NOW = 1_795_000_000
DAY = 86400


@pytest.fixture
async def running_writer(tmp_path: Path) -> AsyncIterator[Writer]:
    store = open_store(tmp_path / "metrics.db")
    store.migrate()
    w = Writer(store, "normal", Telemetry(), 100_000, 1_000_000)
    await w.start()
    yield w
    await w.stop()


def Sample(source: str, name: str, labels: str, timestamp: int, value: float) -> SampleGroup:
    return SampleGroup(source, labels, timestamp, [name], [float(value)])


async def write(w: Writer, samples: list[SampleGroup]) -> None:
    push = Push(samples, len(samples), NOW, w.loop.create_future())
    w.submit(push)
    await push.done


async def test_purge_deletes_only_expired_in_chunks(
    running_writer: Writer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(session, "PURGE_CHUNK_ROWS", 7)
    old = NOW - 8 * DAY
    # 30 series sharing one old timestamp: chunk boundaries fall inside one timestamp.
    await write(running_writer, [Sample("hpc", f"m{i}", "", old, i) for i in range(30)])
    await write(running_writer, [Sample("hpc", "m0", "", old + t, 1) for t in range(1, 11)])
    await write(running_writer, [Sample("hpc", "m1", "", NOW - DAY, 5),
                                 Sample("hpc", "kept", "", NOW, 1)])
    deleted = await retention.purge(running_writer, running_writer.telemetry, 7, NOW)
    assert deleted == 40
    db = tmp_path / "metrics.db"
    assert rows(db, "SELECT metric_name, timestamp FROM metrics ORDER BY metric_name") == [
        ("kept", NOW), ("m1", NOW - DAY)]
    # Series with nothing left are forgotten; the others keep their newest sample.
    assert rows(db, "SELECT metric_name FROM series ORDER BY metric_name") == [("kept",), ("m1",)]
    assert rows(db, "SELECT count(*) FROM latest") == [(2,)]
    assert running_writer.telemetry.purged_samples == 40
    assert running_writer.telemetry.last_purge is not None
    # Writing to a forgotten series again creates it afresh.
    await write(running_writer, [Sample("hpc", "m5", "", NOW, 9)])
    assert rows(db, "SELECT metric_value FROM metrics WHERE metric_name = 'm5'") == [(9.0,)]


async def test_purge_of_nothing(running_writer: Writer) -> None:
    assert await retention.purge(running_writer, running_writer.telemetry, 7, NOW) == 0


async def test_pushes_are_answered_between_purge_chunks(
    running_writer: Writer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(session, "PURGE_CHUNK_ROWS", 1)
    old = NOW - 30 * DAY
    await write(running_writer, [Sample("hpc", f"m{i % 50}", "", old + i, 1) for i in range(5000)])
    chunks: list[object] = []
    running_writer.subscribers.append(chunks.append)
    purge = running_writer.request_purge(NOW - 7 * DAY)
    await poll(lambda: bool(chunks))  # the purge has begun
    pushed = asyncio.ensure_future(write(running_writer, [Sample("hpc", "live", "", NOW, 1)]))
    done, _ = await asyncio.wait({purge, pushed}, return_when=asyncio.FIRST_COMPLETED)
    # 5,000 chunks are needed; the push is committed between two of them, not after all.
    assert pushed in done
    assert await purge == 5000


async def test_scheduled_purge_runs_in_utc(running_writer: Writer) -> None:
    telemetry = running_writer.telemetry
    async with retention.scheduled_purge("0 2 * * *", running_writer, telemetry, 7) as job:
        assert job.tz == UTC
        assert job.handle is not None
        await job.func()  # what the schedule calls
        assert telemetry.last_purge is not None
    assert job.handle is None


async def test_cli_purge_beside_running_server(client: Client, settings: Settings) -> None:
    old = NOW - 30 * DAY
    push = {"source": "hpc", "timestamp": old, "metrics": {"a": 1, "b": 2}}
    assert (await client.post("/ingest", json=push, headers=AUTH)).status == 200
    # `metrics-ingest purge` runs on its own connection while the server holds its own.
    deleted = await retention.purge_store(open_store(settings.database), 7, NOW)
    assert deleted == 2
    assert rows(settings, "SELECT count(*) FROM series") == [(0,)]
    # The server notices the outside commit and does not reuse the forgotten series ids.
    fresh = {"source": "hpc", "metrics": {"a": 3}}
    assert (await client.post("/ingest", json=fresh, headers=AUTH)).status == 200
    assert rows(settings, "SELECT metric_name, metric_value FROM metrics") == [("a", 3.0)]


async def test_purge_shows_in_self_metrics(client: Client, settings: Settings) -> None:
    push = {"source": "hpc", "timestamp": NOW - 30 * DAY, "metrics": {"a": 1}}
    assert (await client.post("/ingest", json=push, headers=AUTH)).status == 200
    app = client.app
    assert await retention.purge(app[WRITER], app[TELEMETRY], 7, NOW) == 1
    text = await (await client.get("/metrics")).text()
    assert "metrics_ingest_purged_samples_total 1\n" in text
    assert "metrics_ingest_last_purge_timestamp_seconds " in text


async def test_a_group_older_than_retention_is_still_exported(client: Client,
                                                              settings: Settings) -> None:
    """A weekly job's last push stays its group's until replaced or deleted: the purge keeps
    a group member's newest sample and drops only what is older, and what left the group."""
    week = 7 * DAY
    for age in (3 * week, 2 * week):  # two weekly runs, the last 14 days ago
        push = f"weekly_last_success {NOW - age}\nweekly_rows {age}\n"
        assert (await client.put(f"/metrics/job/weekly?timestamp={NOW - age}", data=push,
                                 headers=AUTH)).status == 200
    assert (await client.put(f"/metrics/job/weekly?timestamp={NOW - 2 * week + 1}",
                             data=f"weekly_last_success {NOW - 2 * week}\n",
                             headers=AUTH)).status == 200  # weekly_rows left the group
    app = client.app
    assert await retention.purge(app[WRITER], app[TELEMETRY], 7, NOW) == 4
    assert rows(settings, "SELECT metric_name, timestamp FROM metrics") == [
        ("weekly_last_success", NOW - 2 * week + 1)]
    text = await (await client.get("/metrics")).text()
    assert f'weekly_last_success{{source="weekly",instance="",job="weekly"}} {NOW - 2 * week}' \
        in text
    assert "weekly_rows" not in text
    assert 'push_time_seconds{source="weekly",instance="",job="weekly"}' in text
    # A second purge, from the CLI beside the server, keeps it too.
    assert await retention.purge_store(open_store(settings.database), 7, NOW) == 0
    assert "weekly_last_success{" in await (await client.get("/metrics")).text()


@pytest.mark.parametrize(("spec", "fired", "due"), [
    ("* * * * *", "14:17:59.999", "14:18:00"),  # a server firing a moment early...
    ("* * * * *", "14:18:00.001", "14:18:00"),  # ...and one a moment late: one run
    ("* * * * *", "14:18:00", "14:18:00"),
    ("* * * * *", "14:18:20", "14:18:00"),      # aiocron's timer drifted 20 s
    ("*/15 * * * * *", "14:18:15.2", "14:18:15"),  # each run of a sub-minute schedule
    ("*/15 * * * * *", "14:18:29.9", "14:18:30"),  # is a run of its own
    ("0 3 * * *", "03:00:00.4", "03:00:00"),
])
def test_servers_firing_either_side_of_a_run_claim_the_same_slot(spec: str, fired: str,
                                                                   due: str) -> None:
    """Two servers' schedules fired 1 ms apart at 14:18:00 once claimed the runs of 14:17
    and 14:18 (a minute read off each clock) and both purged; a sub-minute schedule's later
    runs in a minute were all refused."""
    def at(clock: str) -> float:
        return datetime.fromisoformat(f"2026-12-03T{clock}").replace(tzinfo=UTC).timestamp()

    assert retention.due_slot(spec, at(fired)) == at(due)
