"""Metric families keep the TYPE and HELP they were pushed with (Pushgateway API text,
remote_write metadata), are checked for consistency as the Pushgateway checks them, and
render as valid exposition; the Pushgateway's per-group push times are exported."""

from __future__ import annotations

import time

from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

from bench.encode import snappy, write_request
from metrics_ingest.config import Settings
from tests.conftest import AUTH, REPO, promtool, rows, run_tool

Client = TestClient[web.Request, web.Application]
EXPORTERS = REPO / "tests" / "fixtures" / "exporters"
OM = {"Accept": "application/openmetrics-text; version=1.0.0"}
RW_HEADERS = {**AUTH, "Content-Encoding": "snappy", "Content-Type": "application/x-protobuf"}


async def scrape(client: Client, headers: dict[str, str] | None = None) -> str:
    response = await client.get("/metrics", headers=headers or {})
    assert response.status == 200
    return await response.text()


def types_of(text: str) -> dict[str, str]:
    return {line.split()[2]: line.split()[3] for line in text.splitlines()
            if line.startswith("# TYPE ")}


async def push_exporters(client: Client) -> None:
    for name, path in (("node_exporter.prom", "/metrics/job/node/instance/n1"),
                       ("slurm_exporter.prom", "/metrics/job/slurm")):
        response = await client.put(path, data=(EXPORTERS / name).read_bytes(), headers=AUTH)
        assert response.status == 200, await response.text()


async def lint(text: str) -> set[str]:
    """promtool's findings, one per line; exit status 3 means lint findings only."""
    code, output = await run_tool(promtool(), "check", "metrics", stdin=text)
    assert code in (0, 3), output
    return {line for line in output.splitlines() if line.strip()}


async def test_exporter_output_keeps_its_types(client: Client) -> None:
    await push_exporters(client)
    text = await scrape(client)
    types = types_of(text)
    assert types["go_gc_duration_seconds"] == "summary"
    assert types["prometheus_http_request_duration_seconds"] == "histogram"
    assert types["node_cpu_seconds_total"] == "counter"
    assert types["nginx_connections_accepted"] == "counter"  # a counter without _total
    assert types["go_goroutines"] == "gauge"
    assert types["slurm_cpus_total"] == "gauge"  # a gauge named _total stays a gauge
    assert "# HELP go_goroutines Number of goroutines that currently exist.\n" in text
    # One family per histogram, its buckets in order, then _count and _sum, per label set.
    family = [line for line in text.splitlines()
              if line.startswith("prometheus_http_request_duration_seconds")]
    assert len(family) == 36
    assert family[0].startswith('prometheus_http_request_duration_seconds_bucket{source="node",'
                                'handler="/api/v1/query",instance="n1",job="node",le="0.1"} ')
    assert family[9].split("{")[0].endswith("_bucket")
    assert 'le="+Inf"' in family[9]
    assert family[10].startswith("prometheus_http_request_duration_seconds_count{")
    assert family[11].startswith("prometheus_http_request_duration_seconds_sum{")
    # Both parsers read every family with its type.
    parsed = {family.name: family.type for family in parse_text(text)}
    assert parsed["prometheus_http_request_duration_seconds"] == "histogram"
    assert parsed["go_gc_duration_seconds"] == "summary"
    om = {family.name: family.type for family in parse_om(await scrape(client, OM))}
    assert om["node_cpu_seconds"] == "counter"
    assert om["nginx_connections_accepted"] == "unknown"  # OpenMetrics counters need _total
    assert om["prometheus_http_request_duration_seconds"] == "histogram"


async def test_prometheus_gets_text_when_openmetrics_would_lose_a_counter(
        client: Client) -> None:
    prometheus = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                  "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
    body = b"# TYPE jobs_done_total counter\njobs_done_total 3\n"
    assert (await client.put("/metrics/job/a", data=body, headers=AUTH)).status == 200
    response = await client.get("/metrics", headers={"Accept": prometheus})
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    body = b"# TYPE nginx_connections_accepted counter\nnginx_connections_accepted 9\n"
    assert (await client.put("/metrics/job/b", data=body, headers=AUTH)).status == 200
    response = await client.get("/metrics", headers={"Accept": prometheus})
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = await response.text()
    assert "# TYPE nginx_connections_accepted counter\n" in text
    assert "# TYPE jobs_done_total counter\n" in text


async def test_promtool_finds_nothing_the_exporters_lack(client: Client) -> None:
    await push_exporters(client)
    ours = await lint(await scrape(client))
    theirs: set[str] = set()
    for name in ("node_exporter.prom", "slurm_exporter.prom"):
        theirs |= await lint((EXPORTERS / name).read_text())
    assert ours <= theirs, ours - theirs
    print("promtool lint findings (the exporters' own names):", *sorted(ours), sep="\n  ")


async def test_type_clash_is_refused_and_recorded(client: Client, settings: Settings) -> None:
    await push_exporters(client)
    clash = await client.put("/metrics/job/other", headers=AUTH,
                             data=b"# TYPE go_goroutines counter\ngo_goroutines 1\n")
    assert clash.status == 400
    error = (await clash.json())["error"]
    assert error == ("pushed metrics are invalid or inconsistent with existing metrics: "
                     "family go_goroutines is a gauge, pushed as counter")
    collide = await client.put("/metrics/job/other", headers=AUTH,
                               data=b"# TYPE go_gc_duration_seconds_count gauge\n"
                                    b"go_gc_duration_seconds_count 1\n")
    assert collide.status == 400
    assert "collides with the summary family go_gc_duration_seconds" in (
        await collide.json())["error"]
    claimed = await client.post("/ingest", headers=AUTH, json={"source": "hpc", "metrics": {
        "prometheus_http_request_duration_seconds_bucket": 1}})
    assert claimed.status == 400
    assert "belongs to the histogram family" in (await claimed.json())["error"]
    assert rows(settings, "SELECT count(*) FROM metrics WHERE source IN ('other',"
                " 'hpc')") == [(0,)]
    text = await scrape(client)
    assert 'push_failure_time_seconds{source="other",instance="",job="other"} 17' in text
    assert 'push_time_seconds{source="other",instance="",job="other"} 0\n' in text


async def test_push_times_follow_the_pushgateway(client: Client) -> None:
    group = "/metrics/job/nightly/instance/node07"
    before = time.time()
    assert (await client.put(group, data=b"job_last_success_unixtime 1\n",
                             headers=AUTH)).status == 200
    text = await scrape(client)
    [pushed] = [line for line in text.splitlines() if line.startswith("push_time_seconds{")]
    assert pushed.startswith('push_time_seconds{source="nightly",instance="node07",'
                             'job="nightly"} ')
    assert before - 1 <= float(pushed.split()[-1]) <= time.time() + 1
    assert 'push_failure_time_seconds{source="nightly",instance="node07",job="nightly"} 0\n' \
        in text
    stamped = await client.put(group, data=b"job_last_success_unixtime 1 1795000000000\n",
                               headers=AUTH)
    assert stamped.status == 400
    assert "must not have timestamps" in (await stamped.json())["error"]
    text = await scrape(client)
    assert 'job_last_success_unixtime{source="nightly",instance="node07",job="nightly"} 1' in text
    [failed] = [line for line in text.splitlines() if line.startswith("push_failure_time")]
    assert float(failed.split()[-1]) >= before
    assert (await client.delete(group, headers=AUTH)).status == 202
    assert "push_time_seconds" not in await scrape(client)


async def test_gauge_histograms_and_other_types(client: Client) -> None:
    body = (b"# TYPE queue_wait gaugehistogram\n"
            b'queue_wait_bucket{le="1"} 2\nqueue_wait_bucket{le="+Inf"} 5\n'
            b"queue_wait_sum 7\nqueue_wait_count 5\n")
    assert (await client.put("/metrics/job/q", data=body, headers=AUTH)).status == 200
    assert types_of(await scrape(client))["queue_wait"] == "histogram"
    info = await client.put("/metrics/job/q", data=b"# TYPE build info\nbuild_info 1\n",
                            headers=AUTH)
    assert info.status == 400
    assert "unknown metric type 'info'" in (await info.json())["error"]


async def test_push_timestamp_is_bounded(client: Client) -> None:
    for stamp, words in (("999999999999", "more than 1 hour in the future"),
                         ("1", "more than 365 days in the past"), ("12x", "Unix seconds")):
        response = await client.put(f"/metrics/job/late?timestamp={stamp}", data=b"x 1\n",
                                    headers=AUTH)
        assert response.status == 400
        assert words in (await response.json())["error"]


async def test_remote_write_metadata_types_families(client: Client) -> None:
    now_ms = int(time.time()) * 1000
    series: list[tuple[dict[str, str], list[tuple[float, int]]]] = [
        ({"__name__": "rpc_seconds_bucket", "job": "api", "le": le}, [(value, now_ms)])
        for le, value in (("0.5", 3.0), ("+Inf", 4.0), ("0.1", 1.0))]
    series += [({"__name__": "rpc_seconds_count", "job": "api"}, [(4.0, now_ms)]),
               ({"__name__": "rpc_seconds_sum", "job": "api"}, [(1.25, now_ms)]),
               ({"__name__": "http_requests_total", "job": "api"}, [(9.0, now_ms)])]
    metadata = [(3, "rpc_seconds", "RPC latency."), (1, "http_requests", "Requests.")]
    for body in (write_request(series), write_request([], metadata)):
        response = await client.post("/api/v1/write", data=snappy(body), headers=RW_HEADERS)
        assert response.status == 204
    text = await scrape(client)
    types = types_of(text)
    assert types["rpc_seconds"] == "histogram"
    assert types["http_requests_total"] == "counter"  # OpenMetrics-style family, text names
    assert "# HELP rpc_seconds RPC latency.\n" in text
    family = [line.split("{")[0] for line in text.splitlines() if line.startswith("rpc_")]
    assert family == ["rpc_seconds_bucket"] * 3 + ["rpc_seconds_count", "rpc_seconds_sum"]
    assert 'le="0.1"' in next(line for line in text.splitlines() if line.startswith("rpc_"))
    om = {family.name: family.type for family in parse_om(await scrape(client, OM))}
    assert om["http_requests"] == "counter"
    # A clashing declaration from remote_write is ignored, not a refused batch.
    clash = write_request([], [(2, "rpc_seconds", "now a gauge?")])
    response = await client.post("/api/v1/write", data=snappy(clash), headers=RW_HEADERS)
    assert response.status == 204
    assert types_of(await scrape(client))["rpc_seconds"] == "histogram"


