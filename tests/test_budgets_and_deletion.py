"""Series budgets, deletion by selector and push-group expiry, on both engines: what a pusher
and an operator see (answers, /metrics) and what the database then holds."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from metrics_ingest import retention
from metrics_ingest.config import Settings
from metrics_ingest.keys import TELEMETRY, WRITER
from tests.conftest import AUTH, Clock, rows

Client = TestClient[web.Request, web.Application]
ADMIN = "admin-token-for-tests"
READ = "read-token-for-tests"


def push(source: str, metrics: dict[str, float], stamp: int | None = None,
         labels: dict[str, str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"source": source, "metrics": metrics}
    if stamp is not None:
        body["timestamp"] = stamp
    if labels:
        body["labels"] = labels
    return body


async def scrape(client: Client) -> str:
    return await (await client.get("/metrics")).text()


async def test_a_source_at_its_budget(make_client: Callable[[Settings], Any],
                                      settings: Settings) -> None:
    client: Client = await make_client(settings.replace(max_series_per_source=5,
                                                        max_series=8))
    first = await client.post("/ingest", json=push("a", {f"m{i}": i for i in range(5)}),
                              headers=AUTH)
    assert first.status == 200
    # One series more is refused whole, naming the source and the limit; not retried.
    over = await client.post("/ingest", json=push("a", {"m0": 10, "m9": 9}), headers=AUTH)
    assert over.status == 422
    error = (await over.json())["error"]
    assert "'a'" in error
    assert "5" in error
    assert "METRICS_MAX_SERIES_PER_SOURCE" in error
    assert rows(settings, "SELECT metric_value FROM metrics WHERE metric_name = 'm0'") == [(0.0,)]
    # Samples for existing series keep flowing.
    again = await client.post("/ingest", json=push("a", {"m0": 11}), headers=AUTH)
    assert again.status == 200
    # Another source is not affected, until the database's own budget (8) is reached.
    other = await client.post("/ingest", json=push("b", {"x": 1, "y": 2, "z": 3}),
                              headers=AUTH)
    assert other.status == 200
    total = await client.post("/ingest", json=push("c", {"q": 1}), headers=AUTH)
    assert total.status == 422
    assert "METRICS_MAX_SERIES" in (await total.json())["error"]
    text = await scrape(client)
    assert 'metrics_ingest_series{source="a"} 5' in text
    assert 'metrics_ingest_series{source="b"} 3' in text
    assert ('metrics_ingest_rejected_pushes_total{reason="series_limit",source="a"} 1'
            in text)
    assert 'm0{source="a"} 11' in text


async def test_the_purge_frees_a_budget(make_client: Callable[[Settings], Any],
                                        settings: Settings) -> None:
    client: Client = await make_client(settings.replace(max_series_per_source=2))
    old = int(time.time()) - 10 * 86400
    assert (await client.post("/ingest", json=push("a", {"m1": 1, "m2": 2}, old),
                              headers=AUTH)).status == 200
    assert (await client.post("/ingest", json=push("a", {"m3": 3}), headers=AUTH)
            ).status == 422
    app = client.server.app
    await retention.purge(app[WRITER], app[TELEMETRY], 7, time.time())
    assert (await client.post("/ingest", json=push("a", {"m3": 3}), headers=AUTH)
            ).status == 200
    assert rows(settings, "SELECT series FROM source_series WHERE source = 'a'") == [(1,)]


async def test_a_budget_counts_the_series_of_one_batch_once(
        make_client: Callable[[Settings], Any], settings: Settings) -> None:
    """Pushes committed in one batch are admitted in order: the second creating the same
    series does not count it again, a third beyond the budget is refused alone."""
    client: Client = await make_client(settings.replace(max_series_per_source=3))
    answers = await asyncio.gather(
        client.post("/ingest", json=push("a", {"m1": 1, "m2": 2}), headers=AUTH),
        client.post("/ingest", json=push("a", {"m1": 3, "m2": 4}), headers=AUTH),
        client.post("/ingest", json=push("a", {"m3": 1}), headers=AUTH),
        client.post("/ingest", json=push("a", {"m4": 1}), headers=AUTH))
    assert [answer.status for answer in answers] == [200, 200, 200, 422]


def admin_settings(settings: Settings) -> Settings:
    return settings.replace(admin_token=ADMIN, read_token=READ)


async def seed(client: Client, now: int) -> None:
    for offset in (600, 300, 0):
        stamp = now - offset
        for source, host in (("alpha", "n1"), ("alpha", "n2"), ("beta", "n1")):
            response = await client.post("/ingest", headers=AUTH, json=push(
                source, {"cpu": offset + 1, "mem": 2.0}, stamp, {"host": host}))
            assert response.status == 200


def stored(settings: Settings) -> list[tuple[Any, ...]]:
    return rows(settings, "SELECT source, metric_name, labels, timestamp FROM metrics"
                " ORDER BY 1, 2, 3, 4")


@pytest.mark.parametrize(("selector", "gone"), [
    ('cpu{source="alpha"}', lambda r: r[0] == "alpha" and r[1] == "cpu"),
    ('{source!="alpha", __name__=~".+"}', lambda r: r[0] != "alpha"),
    ('{__name__=~"c.u", host=~"n[2-9]"}', lambda r: r[1] == "cpu" and '"n2"' in r[2]),
    ('mem{host!~"n1|n3"}', lambda r: r[1] == "mem" and '"n1"' not in r[2]),
])
async def test_delete_series_removes_exactly_the_matching_samples(
        make_client: Callable[[Settings], Any], settings: Settings, clock: Clock,
        selector: str, gone: Callable[[tuple[Any, ...]], bool]) -> None:
    client: Client = await make_client(admin_settings(settings))
    now = int(time.time())
    await seed(client, now)
    before = stored(settings)
    answer = await client.post("/api/v1/admin/tsdb/delete_series",
                               params={"match[]": selector},
                               headers={"Authorization": f"Bearer {ADMIN}"})
    assert answer.status == 204, await answer.text()
    assert stored(settings) == [row for row in before if not gone(row)]
    # /metrics reflects it at once: no series left whose samples all went.
    text = await (await client.get("/metrics", headers={"Authorization": f"Bearer {READ}"})
                  ).text()
    for source, name, labels, _ in before:
        host = labels.split('"')[3]
        line = f'{name}{{source="{source}",host="{host}"}}'
        row = (source, name, labels, 0)
        assert (line in text) == (not gone(row)), line
    series = rows(settings, "SELECT count(*) FROM series")[0][0]
    assert series == len({(r[0], r[1], r[2]) for r in stored(settings)})


async def test_delete_series_within_a_time_range(
        make_client: Callable[[Settings], Any], settings: Settings) -> None:
    client: Client = await make_client(admin_settings(settings))
    now = int(time.time())
    await seed(client, now)
    answer = await client.post(
        "/api/v1/admin/tsdb/delete_series", headers={"Authorization": f"Bearer {ADMIN}"},
        data={"match[]": 'cpu{source="beta"}', "start": str(now - 400), "end": str(now)})
    assert answer.status == 204
    assert rows(settings, "SELECT timestamp, metric_value FROM metrics WHERE source = 'beta'"
                " AND metric_name = 'cpu'") == [(now - 600, 601.0)]
    # Its newest sample went: the series' latest is now the one left (exported only while
    # inside the export window, as any sample).
    assert rows(settings, "SELECT l.timestamp FROM latest l JOIN series s ON s.id = l.series_id"
                " WHERE s.source = 'beta' AND s.metric_name = 'cpu'") == [(now - 600,)]


@pytest.mark.parametrize(("token", "status"), [(READ, 403), ("test-token", 403),
                                               ("wrong", 401), (None, 401)])
async def test_delete_series_needs_the_admin_role(
        make_client: Callable[[Settings], Any], settings: Settings, token: str | None,
        status: int) -> None:
    client: Client = await make_client(admin_settings(settings))
    await seed(client, int(time.time()))
    before = stored(settings)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answer = await client.post("/api/v1/admin/tsdb/delete_series",
                               params={"match[]": "cpu"}, headers=headers)
    assert answer.status == status
    assert stored(settings) == before


@pytest.mark.parametrize(("params", "words"), [
    ({}, "no match[]"),
    ({"match[]": "sum(cpu)"}, "not a series selector"),
    ({"match[]": '{host=""}'}, "at least one non-empty matcher"),
    ({"match[]": "cpu{"}, "invalid selector"),
    ({"match[]": 'cpu{host=~"("}'}, "illegal regex"),
    ({"match[]": "cpu", "start": "yesterday"}, "cannot parse"),
    ({"match[]": "cpu", "start": "20", "end": "10"}, "end timestamp must not be before"),
    ({"match[]": "cpu", "what": "1"}, "unknown parameter"),
])
async def test_delete_series_errors_in_prometheus_shape(
        make_client: Callable[[Settings], Any], settings: Settings,
        params: dict[str, str], words: str) -> None:
    client: Client = await make_client(admin_settings(settings))
    answer = await client.post("/api/v1/admin/tsdb/delete_series", params=params,
                               headers={"Authorization": f"Bearer {ADMIN}"})
    assert answer.status == 400
    body = await answer.json()
    assert body["status"] == "error"
    assert body["errorType"] == "bad_data"
    assert words in body["error"]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "metrics_ingest", *args], capture_output=True,
                          text=True, timeout=120, check=False)


async def test_cli_delete_beside_the_server(make_client: Callable[[Settings], Any],
                                            settings: Settings) -> None:
    client: Client = await make_client(admin_settings(settings))
    await seed(client, int(time.time()))
    done = await asyncio.to_thread(cli, "delete", "--match", '{source="beta"}',
                                   "--db", settings.database)
    assert done.returncode == 0, done.stderr
    assert "deleted 6 samples of 2 series (2 series left empty and removed)" in done.stdout
    assert "time slices" in done.stderr  # progress
    assert {row[0] for row in stored(settings)} == {"alpha"}
    text = await (await client.get("/metrics", headers={"Authorization": f"Bearer {READ}"})
                  ).text()
    assert 'source="beta"' not in text.split("# HELP metrics_ingest_")[0]
    refused = await asyncio.to_thread(cli, "delete", "--match", "sum(x)", "--db",
                                      settings.database)
    assert refused.returncode == 1
    assert "is not a series selector" in refused.stderr


async def test_a_group_past_its_ttl(make_client: Callable[[Settings], Any],
                                    settings: Settings, clock: Clock) -> None:
    client: Client = await make_client(settings.replace(group_ttl=3600))
    clock.pinned = time.time()
    for job, query in (("short", "?ttl=30s"), ("default", ""), ("forever", "?ttl=0")):
        answer = await client.put(f"/metrics/job/{job}{query}", data=f"{job}_up 1\n",
                                  headers=AUTH)
        assert answer.status == 200, await answer.text()
    assert (await client.put("/metrics/job/x?ttl=soon", data="x 1\n", headers=AUTH)
            ).status == 400
    text = await scrape(client)
    assert all(f"{job}_up" in text for job in ("short", "default", "forever"))
    clock.pinned += 60  # past the 30 s of `short`, within the default hour

    async def exported() -> str:
        return await scrape(client)

    deadline = time.monotonic() + 10
    while "short_up" in (text := await exported()):
        assert time.monotonic() < deadline, "the expired group is still exported"
    assert "default_up" in text
    assert "forever_up" in text
    assert 'push_time_seconds{source="short"' not in text
    clock.pinned += 7200  # past the default hour too
    deadline = time.monotonic() + 10
    while "default_up" in (text := await exported()):
        assert time.monotonic() < deadline, "the group past the default TTL is exported"
    assert "forever_up" in text
    # Still stored until the purge, which then forgets them samples and all.
    assert rows(settings, "SELECT count(*) FROM series WHERE source = 'short'") == [(1,)]
    app = client.server.app
    await retention.purge(app[WRITER], app[TELEMETRY], 7, time.time())
    assert rows(settings, "SELECT source FROM series ORDER BY 1") == [("forever",)]
    assert rows(settings, "SELECT source FROM metrics ORDER BY 1") == [("forever",)]
