"""The Prometheus query API on a real server over a real store (both engines): every endpoint's
answer, the calls Grafana makes, every error path in Prometheus's error shape, the sample
limit and the timeout, pushes answered during a heavy query, and promtool against it."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from metrics_ingest.config import Settings
from tests.conftest import AUTH, TOKEN, Clock, Service, poll, promtool, rows

Client = TestClient[web.Request, web.Application]
NOW = int(time.time()) // 60 * 60


async def push(client: Client, objects: list[dict[str, Any]]) -> None:
    response = await client.post("/ingest", json=objects, headers=AUTH)
    assert response.status == 200, await response.text()


@pytest.fixture
async def filled(client: Client) -> Client:
    """Two sources' requests counters and a gauge over the last ten minutes, and a family
    with pushed TYPE and HELP."""
    objects = []
    for t in range(NOW - 600, NOW + 1, 15):
        for source, rate in (("alpha", 2), ("beta", 5)):
            objects.append({"source": source, "timestamp": t, "labels": {"code": "200"},
                            "metrics": {"requests_total": (t - NOW + 600) * rate,
                                        "temperature": 20 + (t % 7)}})
    await push(client, objects)
    text = b"# TYPE jobs_done_total counter\n# HELP jobs_done_total Jobs finished.\n" \
           b"jobs_done_total 3\n"
    response = await client.put("/metrics/job/nightly", data=text, headers=AUTH)
    assert response.status == 200, await response.text()
    return client


async def get(client: Client, path: str, **params: Any) -> tuple[int, Any]:
    response = await client.get(path, params=params)
    return response.status, await response.json()


async def test_instant_query(filled: Client) -> None:
    status, body = await get(filled, "/api/v1/query", query="sum by (source) (rate("
                             "requests_total[5m]))", time=str(NOW))
    assert status == 200
    assert body["status"] == "success"
    assert body["data"]["resultType"] == "vector"
    values = {r["metric"]["source"]: r["value"] for r in body["data"]["result"]}
    assert values == {"alpha": [NOW, "2"], "beta": [NOW, "5"]}


async def test_range_query_form_post(filled: Client) -> None:
    """Grafana's panels: a form-encoded POST."""
    response = await filled.post("/api/v1/query_range", data={
        "query": 'temperature{source="alpha"}', "start": str(NOW - 60), "end": str(NOW),
        "step": "30s"})
    assert response.status == 200
    result = (await response.json())["data"]["result"]
    assert [r["metric"] for r in result] == [
        {"__name__": "temperature", "code": "200", "source": "alpha"}]
    assert [point[0] for point in result[0]["values"]] == [NOW - 60, NOW - 30, NOW]


async def test_grafana_calls(filled: Client) -> None:
    """What Grafana's Prometheus data source calls: its health check `1+1` at time=4,
    buildinfo, metric names, labels, label values with match[], metadata."""
    status, body = await get(filled, "/api/v1/query", query="1+1", time="4")
    assert (status, body) == (200, {"status": "success",
                                    "data": {"resultType": "scalar", "result": [4, "2"]}})
    status, body = await get(filled, "/api/v1/status/buildinfo")
    assert status == 200
    assert body["data"]["version"] == "2.42.0"
    status, body = await get(filled, "/api/v1/label/__name__/values")
    assert body["data"] == ["jobs_done_total", "requests_total", "temperature"]
    status, body = await get(filled, "/api/v1/labels")
    assert body["data"] == ["__name__", "code", "instance", "job", "source"]
    status, body = await get(filled, "/api/v1/label/source/values",
                             **{"match[]": "requests_total"})
    assert body["data"] == ["alpha", "beta"]
    status, body = await get(filled, "/api/v1/metadata")
    assert body["data"]["jobs_done_total"] == [
        {"type": "counter", "help": "Jobs finished.", "unit": ""}]
    assert body["data"]["temperature"] == [
        {"type": "gauge", "help": "Metric from alpha, beta", "unit": ""}]


async def test_series_labels_values_and_limits(filled: Client) -> None:
    status, body = await get(filled, "/api/v1/series", **{"match[]": '{source="beta"}'})
    assert status == 200
    assert body["data"] == [
        {"__name__": "requests_total", "code": "200", "source": "beta"},
        {"__name__": "temperature", "code": "200", "source": "beta"}]
    status, body = await get(filled, "/api/v1/series",
                             **{"match[]": '{source="beta"}', "limit": "1"})
    assert len(body["data"]) == 1
    response = await filled.post("/api/v1/series",
                                 data={"match[]": ["jobs_done_total", "temperature"]})
    assert len((await response.json())["data"]) == 3
    status, body = await get(filled, "/api/v1/labels", **{"match[]": "jobs_done_total"})
    assert body["data"] == ["__name__", "instance", "job", "source"]
    status, body = await get(filled, "/api/v1/label/code/values")
    assert body["data"] == ["200"]
    status, body = await get(filled, "/api/v1/metadata", metric="temperature", limit="5")
    assert list(body["data"]) == ["temperature"]
    status, body = await get(filled, "/api/v1/metadata", limit="0")
    assert body["data"] == {}
    # A series counts from `start` on when it has a sample since then.
    status, body = await get(filled, "/api/v1/series", **{"match[]": "temperature",
                                                         "start": str(NOW + 60)})
    assert body["data"] == []


async def test_exemplars_are_empty(filled: Client) -> None:
    status, body = await get(filled, "/api/v1/query_exemplars", query="temperature")
    assert (status, body) == (200, {"status": "success", "data": []})


BAD = [
    ("/api/v1/query", {"query": "sum("}, 400, "bad_data", 'invalid parameter "query"'),
    ("/api/v1/query", {"query": "up", "time": "noon"}, 400, "bad_data",
     'invalid parameter "time"'),
    ("/api/v1/query", {"query": "up", "timeout": "soon"}, 400, "bad_data",
     'invalid parameter "timeout"'),
    ("/api/v1/query", {"query": "up", "timeout": "+0.0"}, 400, "bad_data",
     "a timeout must be more than zero"),
    ("/api/v1/query", {"query": "mad_over_time(temperature[5m])"}, 400, "bad_data",
     "mad_over_time"),
    ("/api/v1/query", {"query": 'temperature{source="a" or source="b"}'}, 400, "bad_data",
     "`or` between label matchers"),
    ("/api/v1/query", {"query": "limitk(1, temperature)"}, 400, "bad_data", "limitk"),
    ("/api/v1/query", {"query": "temperature + on (code) requests_total"}, 422, "execution",
     "many-to-many matching not allowed"),
    ("/api/v1/query", {"query": '{__name__=~"temperature|requests_total"} * 2'}, 422,
     "execution", "same labelset"),
    ("/api/v1/query", {"query": 'label_replace(temperature, "1x", "", "code", ".*")'}, 422,
     "execution", "invalid destination label name"),
    ("/api/v1/query_range", {"query": "up", "start": "x", "end": "1", "step": "1"}, 400,
     "bad_data", 'invalid parameter "start"'),
    ("/api/v1/query_range", {"query": "up", "start": "1", "end": "x", "step": "1"}, 400,
     "bad_data", 'invalid parameter "end"'),
    ("/api/v1/query_range", {"query": "up", "start": "2", "end": "1", "step": "1"}, 400,
     "bad_data", "end timestamp must not be before start time"),
    ("/api/v1/query_range", {"query": "up", "start": "1", "end": "2", "step": "-1"}, 400,
     "bad_data", "zero or negative query resolution step"),
    ("/api/v1/query_range", {"query": "up", "start": "1", "end": "2", "step": "x"}, 400,
     "bad_data", 'invalid parameter "step"'),
    ("/api/v1/query_range", {"query": "up", "start": "0", "end": "100000", "step": "1"},
     400, "bad_data", "11,000 points"),
    ("/api/v1/query_range", {"query": "up[5m]", "start": "1", "end": "2", "step": "1"},
     400, "bad_data", 'invalid expression type "range vector"'),
    ("/api/v1/series", {}, 400, "bad_data", "no match[] parameter provided"),
    ("/api/v1/series", {"match[]": "rate(up[5m])"}, 400, "bad_data", "not a series selector"),
    ("/api/v1/series", {"match[]": '{a=~".*"}'}, 400, "bad_data", "non-empty matcher"),
    ("/api/v1/labels", {"start": "then"}, 400, "bad_data", 'invalid parameter "start"'),
    ("/api/v1/labels", {"limit": "-3"}, 400, "bad_data", 'invalid parameter "limit"'),
    ("/api/v1/label/1bad/values", {}, 400, "bad_data", "invalid label name"),
    ("/api/v1/metadata", {"limit": "many"}, 400, "bad_data", "limit must be a number"),
    ("/api/v1/query_exemplars", {"query": "sum("}, 400, "bad_data", "unclosed left"),
    ("/api/v1/query_exemplars", {"query": "up", "start": "2", "end": "1"}, 400, "bad_data",
     "end timestamp must not be before start timestamp"),
]


@pytest.mark.parametrize(("path", "params", "status", "error_type", "words"), BAD)
async def test_errors_in_prometheus_shape(filled: Client, path: str, params: dict[str, str],
                                          status: int, error_type: str, words: str) -> None:
    if path == "/api/v1/query":  # (at the data's time, however long the suite has run)
        params = {"time": str(NOW), **params}
    got, body = await get(filled, path, **params)
    assert got == status, body
    assert body["status"] == "error"
    assert body["errorType"] == error_type
    assert words in body["error"]


async def test_wrapper_errors_in_prometheus_shape(
    make_client: Callable[[Settings], Any], settings: Settings
) -> None:
    """Answers the endpoint wrapper gives (auth, method, the database) carry errorType."""
    client: Client = await make_client(settings.replace(read_token="reader"))
    status, body = await get(client, "/api/v1/query", query="1")
    assert status == 401
    assert body["errorType"] == "unauthorized"
    response = await client.get("/api/v1/query", params={"query": "1"},
                                headers={"Authorization": "Bearer reader"})
    assert response.status == 200
    response = await client.delete("/api/v1/query", headers=AUTH)
    assert response.status == 405
    assert (await response.json())["errorType"] == "bad_data"


async def test_database_failure_is_unavailable(sqlite_settings: Settings,
                                               make_client: Callable[[Settings], Any]) -> None:
    client: Client = await make_client(sqlite_settings)
    await push(client, [{"source": "a", "metrics": {"m": 1}}])
    rows(sqlite_settings, "ALTER TABLE latest RENAME TO latest_gone")
    status, body = await get(client, "/api/v1/query", query="m")
    assert status == 503
    assert body["status"] == "error"
    assert body["errorType"] == "unavailable"


async def test_sample_limit(make_client: Callable[[Settings], Any], settings: Settings) -> None:
    client: Client = await make_client(settings.replace(query_max_samples=100))
    await push(client, [{"source": "a", "timestamp": t, "metrics": {"m": t}}
                        for t in range(NOW - 600, NOW)])
    status, body = await get(client, "/api/v1/query", query="m", time=str(NOW))
    assert status == 200
    status, body = await get(client, "/api/v1/query_range", query="m", start=str(NOW - 300),
                             end=str(NOW), step="1")
    assert status == 422
    assert body == {"status": "error", "errorType": "execution", "error": "query processing "
                    "would load too many samples into memory in query execution"}


async def test_timeout(filled: Client) -> None:
    status, body = await get(filled, "/api/v1/query", query="temperature", time=str(NOW),
                             timeout="0.0000001")
    assert status == 503
    assert body == {"status": "error", "errorType": "timeout",
                    "error": "query timed out in expression evaluation"}


async def test_pushes_answered_during_a_heavy_query(sqlite_settings: Settings,
                                                    make_client: Callable[[Settings], Any],
                                                    clock: Clock) -> None:
    client: Client = await make_client(sqlite_settings)
    await push(client, [{"source": f"s{i % 50}", "timestamp": t, "labels": {"n": str(i)},
                         "metrics": {"load": i + t % 13}}
                        for i in range(100) for t in range(NOW - 3600, NOW, 60)])
    heavy = asyncio.ensure_future(client.get("/api/v1/query_range", params={
        "query": "sum by (source) (avg_over_time(load[10m:10s]))", "start": str(NOW - 3600),
        "end": str(NOW), "step": "10"}))
    await poll(lambda: bool(rows(sqlite_settings, "SELECT 1 FROM latest LIMIT 1")))
    started = time.monotonic()
    await push(client, [{"source": "probe", "metrics": {"x": 1}}])
    push_seconds = time.monotonic() - started
    assert not heavy.done(), "the query finished before the push: make it heavier"
    response = await heavy
    assert response.status == 200
    print(f"push answered in {push_seconds * 1000:.0f} ms during the query")


@pytest.mark.slow
def test_promtool_queries(service_factory: Callable[..., Service]) -> None:
    service = service_factory()
    subprocess.run(["curl", "-fsS", "-X", "POST", f"{service.url}/ingest", "-H",
                    f"Authorization: Bearer {TOKEN}", "-d",
                    '{"source": "hpc", "labels": {"node": "n1"}, "metrics": {"jobs": 7}}'],
                   check=True, capture_output=True, timeout=30)
    now = int(time.time())

    def run(*args: str) -> str:
        done = subprocess.run([promtool(), "query", *args], capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert run("instant", service.url, "sum by (source) (jobs)").startswith(
        '{source="hpc"} => 7 @[')
    ranged = run("range", f"--start={now - 60}", f"--end={now + 1}", "--step=30s",
                 service.url, "jobs")
    assert ranged.startswith('jobs{node="n1", source="hpc"} =>\n7 @[')
    assert run("series", "--match=jobs", service.url) == (
        '{__name__="jobs", node="n1", source="hpc"}\n')
    assert run("labels", service.url, "node") == "n1\n"
    failed = subprocess.run([promtool(), "query", "instant", service.url, "rate(jobs)"],
                            capture_output=True, text=True, timeout=60)
    assert failed.returncode == 1
    assert "bad_data" in failed.stderr + failed.stdout
