"""CORS on every response (errors included), preflight, liveness and readiness."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from metrics_ingest.config import Settings
from tests.conftest import AUTH

Client = TestClient[web.Request, web.Application]

# (method, path, headers, json body, expected status): one request per status the API answers.
EVERY_ANSWER: list[tuple[str, str, dict[str, str], Any, int]] = [
    ("POST", "/ingest", AUTH, {"source": "hpc", "metrics": {"a": 1}}, 200),
    ("POST", "/ingest", {}, {"source": "hpc", "metrics": {"a": 1}}, 401),
    ("POST", "/ingest", AUTH, {"source": ""}, 400),
    ("POST", "/ingest", {**AUTH, "Content-Encoding": "br"}, None, 415),
    ("GET", "/ingest", AUTH, None, 405),
    ("GET", "/metrics", {}, None, 200),
    ("POST", "/metrics", {}, None, 405),
    ("GET", "/api/metrics", {}, None, 200),
    ("GET", "/api/metrics?limit=0", {}, None, 400),
    ("GET", "/api/sources", {}, None, 200),
    ("GET", "/api/sources?window=x", {}, None, 400),
    ("GET", "/healthz", {}, None, 200),
    ("GET", "/readyz", {}, None, 200),
    ("GET", "/no/such/path", {}, None, 404),
]


@pytest.mark.parametrize(("method", "path", "headers", "body", "status"), EVERY_ANSWER)
async def test_every_answer_has_cors_and_json_errors(
    make_client: Callable[[Settings], Any], settings: Settings,
    method: str, path: str, headers: dict[str, str], body: Any, status: int,
) -> None:
    client = await make_client(settings.replace(allowed_origin="https://dash.example"))
    response = await client.request(method, path, headers=headers, json=body)
    assert response.status == status
    assert response.headers["Access-Control-Allow-Origin"] == "https://dash.example"
    if status >= 400:
        assert response.content_type == "application/json"
        error = await response.json()
        assert error["status"] == "error"
        assert isinstance(error["error"], str)
        assert error["error"]
        assert "Traceback" not in error["error"]


@pytest.mark.parametrize("path", ["/ingest", "/metrics", "/api/metrics", "/api/sources",
                                  "/healthz", "/readyz"])
async def test_preflight(client: Client, path: str) -> None:
    response = await client.options(path, headers={
        "Origin": "https://dash.example", "Access-Control-Request-Method": "POST"})
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert response.headers["Access-Control-Allow-Headers"] == (
        "Authorization, Content-Type, Content-Encoding")


async def test_preflight_needs_no_token(client: Client) -> None:
    assert (await client.options("/ingest")).status == 204


async def test_health(client: Client) -> None:
    live = await client.get("/healthz")
    assert (live.status, await live.json()) == (200, {"status": "ok"})
    ready = await client.get("/readyz")
    assert (ready.status, await ready.json()) == (200, {"status": "ready", "queued_samples": 0})


async def test_shutting_down_refuses_pushes(client: Client) -> None:
    await client.app.shutdown()  # what SIGTERM triggers first: intake stops
    response = await client.post("/ingest", json={"source": "hpc", "metrics": {"a": 1}},
                                 headers=AUTH)
    assert response.status == 503
    assert response.headers["Retry-After"]
    assert "shutting down" in (await response.json())["error"]
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert await ready.json() == {"status": "error", "error": "shutting down"}


async def test_dead_writer_fails_pushes_instead_of_hanging(client: Client) -> None:
    from metrics_ingest.keys import WRITER

    # A bug in the writer (here: its series map gone) kills it on the next batch.
    await client.app[WRITER].call(lambda session: setattr(session, "series", None))
    response = await client.post("/ingest", json={"source": "hpc", "metrics": {"a": 1}},
                                 headers=AUTH)
    assert response.status == 503
    assert not client.app[WRITER].alive
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert "writer" in (await ready.json())["error"]
    again = await client.post("/ingest", json={"source": "hpc", "metrics": {"a": 1}},
                              headers=AUTH)
    assert again.status == 503


async def test_paths_with_newlines_get_json_errors(client: Client) -> None:
    for path in ("/nope%0Aline", "/metrics/job/a%0Ab"):
        response = await client.delete(path, headers=AUTH)
        assert response.content_type == "application/json"
        assert response.status in (400, 404)
