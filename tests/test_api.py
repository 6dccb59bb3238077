"""`GET /api/metrics` and `GET /api/sources`: filters, window/limit validation, read token."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from metrics_ingest.config import Settings
from tests.conftest import AUTH, TOKEN, Clock

Client = TestClient[web.Request, web.Application]
NOW = 1_795_000_000


@pytest.fixture
async def filled(client: Client, clock: Clock) -> Client:
    clock.pinned = NOW
    pushes = [
        {"source": "hpc", "timestamp": NOW - 30,
         "metrics": {"slurm_pending_jobs": 42, "slurm_running_jobs": 10}},
        {"source": "hpc", "timestamp": NOW - 90, "metrics": {"slurm_pending_jobs": 40}},
        {"source": "server", "timestamp": NOW - 10, "labels": {"host": "web1"},
         "metrics": {"cpu_percent": 12.5}},
        {"source": "old", "timestamp": NOW - 7200, "metrics": {"slurm_pending_jobs": 1}},
    ]
    for push in pushes:
        assert (await client.post("/ingest", json=push, headers=AUTH)).status == 200
    return client


async def test_default_window_newest_first(filled: Client) -> None:
    response = await filled.get("/api/metrics")
    assert response.status == 200
    assert response.content_type == "application/json"
    assert await response.json() == [
        {"source": "server", "timestamp": NOW - 10, "metric_name": "cpu_percent",
         "metric_value": 12.5, "labels": {"host": "web1"}},
        {"source": "hpc", "timestamp": NOW - 30, "metric_name": "slurm_running_jobs",
         "metric_value": 10},
        {"source": "hpc", "timestamp": NOW - 30, "metric_name": "slurm_pending_jobs",
         "metric_value": 42},
        {"source": "hpc", "timestamp": NOW - 90, "metric_name": "slurm_pending_jobs",
         "metric_value": 40},
    ]


@pytest.mark.parametrize(("query", "expected"), [
    ("source=hpc", 3),
    ("metric=slurm_pending_jobs", 2),
    ("source=hpc&metric=slurm_pending_jobs", 2),
    ("source=nobody", 0),
    ("window=1m", 3),
    ("window=60s", 3),
    ("window=20s", 1),
    ("window=3h", 5),
    ("window=1d&source=old", 1),
    ("window=1w&limit=2", 2),
    ("limit=1", 1),
    ("limit=50000", 4),
])
async def test_filters(filled: Client, query: str, expected: int) -> None:
    response = await filled.get(f"/api/metrics?{query}")
    assert response.status == 200
    assert len(await response.json()) == expected


@pytest.mark.parametrize(("query", "parameter"), [
    ("window=0h", "window"), ("window=1y", "window"), ("window=-1h", "window"),
    ("window=h", "window"), ("window=1.5h", "window"), ("window=8d", "window"),
    ("window=2w", "window"), ("window=", "window"), ("window=169h", "window"),
    ("limit=0", "limit"), ("limit=50001", "limit"), ("limit=abc", "limit"),
    ("limit=-5", "limit"), ("limit=", "limit"), ("limit=1e3", "limit"),
    ("source=", "source"), ("metric=", "metric"),
])
async def test_bad_parameters_get_400(filled: Client, query: str, parameter: str) -> None:
    response = await filled.get(f"/api/metrics?{query}")
    assert response.status == 400
    body = await response.json()
    assert body["status"] == "error"
    assert body["error"].startswith(parameter)


async def test_window_up_to_retention(filled: Client) -> None:
    assert (await filled.get("/api/metrics?window=7d")).status == 200
    assert (await filled.get("/api/metrics?window=168h")).status == 200


async def test_sources(filled: Client) -> None:
    response = await filled.get("/api/sources")
    assert response.status == 200
    assert await response.json() == ["hpc", "server"]
    assert await (await filled.get("/api/sources?window=1d")).json() == ["hpc", "old", "server"]
    assert await (await filled.get("/api/sources?window=20s")).json() == ["server"]
    bad = await filled.get("/api/sources?window=1x")
    assert bad.status == 400
    assert (await bad.json())["error"].startswith("window")


async def test_empty_database(client: Client) -> None:
    assert await (await client.get("/api/metrics")).json() == []
    assert await (await client.get("/api/sources")).json() == []


@pytest.mark.parametrize("path", ["/api/metrics", "/api/sources", "/metrics"])
async def test_read_token_when_configured(
    make_client: Callable[[Settings], Any], settings: Settings, path: str
) -> None:
    client = await make_client(settings.replace(read_token="reader"))
    assert (await client.get(path)).status == 401
    assert (await client.get(path, headers={"Authorization": "Bearer wrong"})).status == 401
    assert (await client.get(path, headers={"Authorization": "Bearer reader"})).status == 200
    # A push token is the stronger credential and reads too.
    assert (await client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})).status == 200
    assert (await client.get("/healthz")).status == 200


async def test_reads_are_public_by_default(client: Client) -> None:
    for path in ("/api/metrics", "/api/sources", "/metrics"):
        assert (await client.get(path)).status == 200


@pytest.mark.parametrize("limit", ["²", "١٢", "12\u0663"])
async def test_non_ascii_digits_are_a_400_not_a_crash(client: Client, limit: str) -> None:
    response = await client.get("/api/metrics", params={"limit": limit})
    assert response.status == 400
    assert (await response.json())["error"].startswith("limit")
