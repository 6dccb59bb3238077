"""`POST /ingest` over HTTP against the real app and a real database file."""

from __future__ import annotations

import asyncio
import gzip
import io
import time
import zlib
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from metrics_ingest.config import Settings
from metrics_ingest.keys import TELEMETRY, WRITER
from tests.conftest import AUTH, TOKEN, accept_writes, poll, refuse_writes, rows, writes_held

Client = TestClient[web.Request, web.Application]
JSON = {"Content-Type": "application/json"}
WORKER_PUSH = {"source": "hpc", "metrics": {"slurm_pending_jobs": 42, "slurm_running_jobs": 10}}


def stored(settings: Settings) -> list[tuple[Any, ...]]:
    return rows(settings, "SELECT source, metric_name, metric_value, labels FROM metrics"
                " ORDER BY metric_name")


async def test_worker_push_is_committed_before_the_answer(client: Client, settings: Settings):
    response = await client.post("/ingest", json=WORKER_PUSH, headers=AUTH)
    assert response.status == 200
    assert response.content_type == "application/json"
    assert await response.json() == {"status": "ok", "inserted": 2}
    assert stored(settings) == [("hpc", "slurm_pending_jobs", 42.0, None),
                                ("hpc", "slurm_running_jobs", 10.0, None)]


@pytest.mark.parametrize("content_type", [
    None, "application/json", "application/json; charset=utf-8",
    "application/x-www-form-urlencoded", "APPLICATION/JSON",
])
async def test_json_content_types_accepted(client: Client, content_type: str | None) -> None:
    headers = dict(AUTH)
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = await client.post("/ingest", data=orjson.dumps(WORKER_PUSH), headers=headers,
                                 skip_auto_headers=["Content-Type"])
    assert response.status == 200, await response.text()


@pytest.mark.parametrize("content_type", [
    "text/plain; charset=utf-8",  # .NET's StringContent default
    "application/xml", "multipart/form-data", "application/x-www-form-urlencoded"])
async def test_any_content_type_is_read_as_json(client: Client, settings: Settings,
                                                content_type: str) -> None:
    """As the Worker did: the body is JSON whatever the Content-Type says."""
    response = await client.post("/ingest", data=orjson.dumps(WORKER_PUSH),
                                 headers={**AUTH, "Content-Type": content_type})
    assert response.status == 200
    assert await response.json() == {"status": "ok", "inserted": 2}
    assert len(stored(settings)) == 2


async def test_unknown_content_encoding_gets_415(client: Client) -> None:
    response = await client.post("/ingest", data=b"xx",
                                 headers={**AUTH, "Content-Encoding": "br", **JSON})
    assert response.status == 415
    assert "Content-Encoding" in (await response.json())["error"]


@pytest.mark.parametrize("compress", [gzip.compress, zlib.compress])
async def test_compressed_body(client: Client, settings: Settings,
                               compress: Callable[[bytes], bytes]) -> None:
    response = await client.post("/ingest", data=compress(orjson.dumps(WORKER_PUSH)),
                                 headers={**AUTH, "Content-Encoding": "gzip",
                                          "Content-Type": "application/json"})
    assert response.status == 200, await response.text()
    assert len(stored(settings)) == 2


async def test_corrupt_gzip_gets_400(client: Client) -> None:
    body = gzip.compress(orjson.dumps(WORKER_PUSH))
    for bad in (body[:-12], b"not gzip at all"):
        response = await client.post("/ingest", data=bad,
                                     headers={**AUTH, "Content-Encoding": "gzip", **JSON})
        assert response.status == 400
        assert "gzip" in (await response.json())["error"]


async def test_json_array_is_one_batch(client: Client, settings: Settings) -> None:
    batch = [WORKER_PUSH, {"source": "server", "labels": {"host": "web1"},
                           "metrics": {"cpu_percent": 12.5}}]
    response = await client.post("/ingest", json=batch, headers=AUTH)
    assert await response.json() == {"status": "ok", "inserted": 3}
    assert stored(settings)[0] == ("server", "cpu_percent", 12.5, '{"host":"web1"}')


async def test_repush_replaces_never_duplicates(client: Client, settings: Settings) -> None:
    first = {**WORKER_PUSH, "timestamp": 1_795_000_000}
    await client.post("/ingest", json=first, headers=AUTH)
    again = {**first, "metrics": {"slurm_pending_jobs": 7}}
    response = await client.post("/ingest", json=again, headers=AUTH)
    assert response.status == 200
    assert rows(settings, "SELECT metric_name, metric_value FROM metrics "
                "ORDER BY metric_name") == [("slurm_pending_jobs", 7.0),
                                            ("slurm_running_jobs", 10.0)]


async def test_labels_make_distinct_series(client: Client, settings: Settings) -> None:
    for partition in ("gpu", "cpu"):
        push = {**WORKER_PUSH, "timestamp": 1_795_000_000, "labels": {"partition": partition}}
        assert (await client.post("/ingest", json=push, headers=AUTH)).status == 200
    assert len(stored(settings)) == 4


# -- auth -------------------------------------------------------------------------------------

@pytest.mark.parametrize("header", [
    None, "", "Bearer", "Bearer wrong", f"Basic {TOKEN}", f"Token {TOKEN}", f"Bearer {TOKEN}x",
])
async def test_bad_or_missing_token_gets_401(client: Client, settings: Settings,
                                             header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    response = await client.post("/ingest", json=WORKER_PUSH, headers=headers)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await response.json())["status"] == "error"
    assert stored(settings) == []


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
async def test_scheme_is_case_insensitive(client: Client, scheme: str) -> None:
    response = await client.post("/ingest", json=WORKER_PUSH,
                                 headers={"Authorization": f"{scheme} {TOKEN}"})
    assert response.status == 200


async def test_auth_is_checked_before_the_body(client: Client) -> None:
    # An oversized body with a bad token is a 401, not a 413: the body is never read.
    response = await client.post("/ingest", data=io.BytesIO(b"x" * (11 * 1024 * 1024)),
                                 headers={"Authorization": "Bearer nope", **JSON})
    assert response.status == 401


async def test_token_rotation(make_client: Callable[[Settings], Any], settings: Settings) -> None:
    client = await make_client(settings.replace(auth_tokens=("old", "new")))
    for token in ("old", "new"):
        response = await client.post("/ingest", json=WORKER_PUSH,
                                     headers={"Authorization": f"Bearer {token}"})
        assert response.status == 200
    response = await client.post("/ingest", json=WORKER_PUSH,
                                 headers={"Authorization": "Bearer older"})
    assert response.status == 401


# -- bad bodies -------------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "fragment"), [
    (b"", "not valid JSON"),
    (b"{", "not valid JSON"),
    (b"\xff\xfe{}", "not valid JSON"),
    (b"[" * 5000 + b"]" * 5000, "not valid JSON"),
    (b'{"source":"hpc","metrics":{"a":1e309}}', "not valid JSON"),
    (b"[]", "at least one object"),
    (b'{"source":"hpc","metrics":{"a":"1"}}', "metrics: nothing left to store"),
])
async def test_bad_body_gets_400(client: Client, settings: Settings, body: bytes,
                                 fragment: str) -> None:
    response = await client.post("/ingest", data=body,
                                 headers={**AUTH, "Content-Type": "application/json"})
    assert response.status == 400
    assert fragment in (await response.json())["error"]
    assert stored(settings) == []


async def test_400_lists_every_error(client: Client) -> None:
    push = {"source": "bad source", "metrics": {"ok": 1, "x-y": 2, "z": None}}
    response = await client.post("/ingest", json=push, headers=AUTH)
    body = await response.json()
    assert response.status == 400
    assert body["errors"] == [
        {"path": "source", "error": "must be 1-64 characters of A-Z a-z 0-9 _ . -"}]
    response = await client.post("/ingest?strict=true", json=push, headers=AUTH)
    assert (await response.json())["errors"] == [
        {"path": "source", "error": "must be 1-64 characters of A-Z a-z 0-9 _ . -"},
        {"path": "metrics.x-y", "error": "metric name must match [a-zA-Z_:][a-zA-Z0-9_:]*"},
        {"path": "metrics.z", "error": "must be a number"},
    ]


async def test_bad_metrics_are_skipped_and_listed(client: Client, settings: Settings) -> None:
    """The Worker skipped non-numeric values and stored the rest: so does /ingest, saying
    what it skipped; ?strict=true makes any skip a 400 with nothing stored."""
    push = {"source": "hpc", "metrics": {"slurm_pending_jobs": 42, "status": "ok",
                                         "bad-name": 1, "flag": True}}
    response = await client.post("/ingest", json=push, headers=AUTH)
    assert response.status == 200
    assert await response.json() == {"status": "ok", "inserted": 1, "skipped": [
        {"path": "metrics.status", "error": "must be a number"},
        {"path": "metrics.bad-name", "error": "metric name must match [a-zA-Z_:][a-zA-Z0-9_:]*"},
        {"path": "metrics.flag", "error": "must be a number"}]}
    assert [row[1] for row in stored(settings)] == ["slurm_pending_jobs"]
    text = await (await client.get("/metrics")).text()
    assert 'metrics_ingest_skipped_samples_total{reason="not_a_number",source="hpc"} 2' in text
    assert 'metrics_ingest_skipped_samples_total{reason="invalid_name",source="hpc"} 1' in text
    strict = await client.post("/ingest", params={"strict": "true"},
                               json={**push, "timestamp": int(time.time()) - 5}, headers=AUTH)
    assert strict.status == 400
    assert len((await strict.json())["errors"]) == 3
    assert len(stored(settings)) == 1
    bad = await client.post("/ingest", params={"strict": "maybe"}, json=push, headers=AUTH)
    assert bad.status == 400
    assert "strict must be true or false" in (await bad.json())["error"]


async def test_invalid_batch_stores_nothing(client: Client, settings: Settings) -> None:
    response = await client.post("/ingest", json=[WORKER_PUSH, {"source": "x"}], headers=AUTH)
    assert response.status == 400
    assert stored(settings) == []


# -- limits -----------------------------------------------------------------------------------

@pytest.fixture
def small_limits(settings: Settings) -> Settings:
    return settings.replace(max_body_bytes=65536, queue_max_samples=10, batch_max_samples=10)


async def test_body_over_limit_gets_413(make_client: Callable[[Settings], Any],
                                        small_limits: Settings) -> None:
    client = await make_client(small_limits)
    big = orjson.dumps({"source": "hpc", "metrics": {"a": 1}, "pad": "x" * 70000})
    response = await client.post("/ingest", data=big, headers={**AUTH, **JSON})
    assert response.status == 413

    async def chunks() -> Any:
        for _ in range(100):
            yield b" " * 1000

    response = await client.post("/ingest", data=chunks(), headers={**AUTH, **JSON})
    assert response.status == 413
    assert "larger than 65536 bytes" in (await response.json())["error"]


async def test_gzip_bomb_gets_413(make_client: Callable[[Settings], Any],
                                  small_limits: Settings) -> None:
    client = await make_client(small_limits)
    bomb = gzip.compress(b" " * 50_000_000)
    assert len(bomb) < 65536
    response = await client.post("/ingest", data=bomb,
                                 headers={**AUTH, "Content-Encoding": "gzip", **JSON})
    assert response.status == 413
    assert "inflated" in (await response.json())["error"]


async def test_push_larger_than_the_queue_gets_413(make_client: Callable[[Settings], Any],
                                                   small_limits: Settings) -> None:
    client = await make_client(small_limits)
    push = {"source": "hpc", "metrics": {f"m{i}": i for i in range(11)}}
    response = await client.post("/ingest", json=push, headers=AUTH)
    assert response.status == 413
    assert "at most 10 fit" in (await response.json())["error"]


async def test_overload_gets_503_with_retry_after(make_client: Callable[[Settings], Any],
                                                  small_limits: Settings) -> None:
    client = await make_client(small_limits)
    app = client.app
    # Another connection holds the writer up inside its batch.
    with writes_held(small_limits):
        first = asyncio.create_task(client.post("/ingest", json=WORKER_PUSH, headers=AUTH))
        await poll(lambda: app[WRITER].in_flight == 2)
        waiting = [asyncio.create_task(client.post(
            "/ingest", json={**WORKER_PUSH, "timestamp": 1_795_000_000 + i}, headers=AUTH))
            for i in range(5)]
        await poll(lambda: app[WRITER].queued_samples == 10)
        response = await client.post("/ingest", json=WORKER_PUSH, headers=AUTH)
        assert response.status == 503
        assert response.headers["Retry-After"] == "1"
        assert "overloaded" in (await response.json())["error"]
    answers = await asyncio.gather(first, *waiting)
    assert [answer.status for answer in answers] == [200] * 6
    assert rows(small_limits, "SELECT count(*) FROM samples") == [(12,)]
    rejected = app[TELEMETRY].rejected_pushes
    assert rejected[(("reason", "overload"), ("source", "hpc"))] == 1


async def test_storage_failure_gets_503_and_recovers(client: Client, settings: Settings) -> None:
    assert (await client.post("/ingest", json=WORKER_PUSH, headers=AUTH)).status == 200
    conn = client.app[WRITER]
    word = await conn.call(refuse_writes)
    big = {"source": "hpc", "metrics": {f"m{i}": i for i in range(3000)}}
    response = await client.post("/ingest", json=big, headers=AUTH)
    assert response.status == 503
    assert "database" in (await response.json())["error"]
    assert word in (await response.json())["error"]
    assert (await client.get("/readyz")).status == 503
    assert len(stored(settings)) == 2
    await conn.call(accept_writes)
    assert (await client.post("/ingest", json=big, headers=AUTH)).status == 200
    assert (await client.get("/readyz")).status == 200
    assert len(stored(settings)) == 3002
    rejected = client.app[TELEMETRY].rejected_pushes
    assert rejected[(("reason", "storage"), ("source", "hpc"))] == 1


async def test_wrong_method_gets_405(client: Client) -> None:
    response = await client.get("/ingest", headers=AUTH)
    assert response.status == 405
    assert response.headers["Allow"] == "POST"
    assert (await response.json())["status"] == "error"


async def test_10000_samples_through_200_concurrent_requests(client: Client,
                                                             settings: Settings) -> None:
    base = 1_795_000_000

    async def send(i: int) -> int:
        push = {"source": f"node{i % 7}", "timestamp": base + i,
                "metrics": {f"metric_{j}": i * 100 + j for j in range(50)}}
        response = await client.post("/ingest", json=push, headers=AUTH)
        assert await response.json() == {"status": "ok", "inserted": 50}
        return response.status

    statuses = await asyncio.gather(*(send(i) for i in range(200)))
    assert statuses == [200] * 200
    assert rows(settings, "SELECT count(*), count(DISTINCT id) FROM metrics") == [
        (10000, 10000)]
    assert rows(settings, "SELECT sum(metric_value) FROM metrics") == [
        (sum(i * 100 + j for i in range(200) for j in range(50)),)]
    batches = client.app[TELEMETRY].batch_samples
    assert batches.total == 10000
    assert batches.count < 200, "concurrent pushes should share transactions (group commit)"
