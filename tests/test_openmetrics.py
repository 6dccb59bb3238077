"""OpenMetrics out: negotiation from the Accept header, the format's differences from text
0.0.4, and a parse by prometheus_client's OpenMetrics parser."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om

from metrics_ingest.formats.exposition import OPENMETRICS, TEXT, negotiate
from metrics_ingest.formats.stored import render_stored
from tests.conftest import AUTH, Clock

Client = TestClient[web.Request, web.Application]
NOW = 1_795_000_000
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                     "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


@pytest.mark.parametrize(("accept", "chosen"), [
    (PROMETHEUS_ACCEPT, OPENMETRICS),
    ("", TEXT),
    ("*/*", TEXT),
    ("text/plain;version=0.0.4", TEXT),
    ("text/plain;q=0.9, application/openmetrics-text;q=0.5", TEXT),
    ("application/openmetrics-text; version=1.0.0; charset=utf-8", OPENMETRICS),
    ("application/json", TEXT),
    ("application/openmetrics-text;q=nonsense, text/plain;q=0.1", TEXT),
])
def test_negotiation(accept: str, chosen: object) -> None:
    assert negotiate(accept) is chosen


def test_golden_openmetrics_series() -> None:
    rows = [("jobs", "hpc", '{"q":"a\\"b"}', 42.0, NOW, 0), ("jobs", "web", "", 0.5, NOW - 60, 0)]
    assert "\n".join(render_stored(rows, True, fmt=OPENMETRICS)) == (
        '# HELP jobs Metric from hpc, web\n'
        '# TYPE jobs gauge\n'
        'jobs{source="hpc",q="a\\"b"} 42 1795000000\n'
        'jobs{source="web"} 0.5 1794999940')


async def test_prometheus_accept_header_gets_openmetrics(client: Client, clock: Clock) -> None:
    clock.pinned = NOW
    for name in ("slurm_pending_jobs", "requests_total", "x_count", "x_bucket", "ratio:5m"):
        push = {"source": "hpc", "timestamp": NOW - 5, "labels": {"note": 'say "hi"\n'},
                "metrics": {name: 3}}
        assert (await client.post("/ingest", json=push, headers=AUTH)).status == 200
    response = await client.get("/metrics", headers={"Accept": PROMETHEUS_ACCEPT})
    assert response.headers["Content-Type"] == (
        "application/openmetrics-text; version=1.0.0; charset=utf-8")
    text = await response.text()
    assert text.endswith("# EOF\n")
    assert f'slurm_pending_jobs{{source="hpc",note="say \\"hi\\"\\n"}} 3 {NOW - 5}\n' in text
    assert "# TYPE metrics_ingest_requests counter\n" in text  # counters drop _total ...
    assert "metrics_ingest_requests_total{" in text  # ... their samples keep it
    families = {family.name: family for family in parse_om(text)}
    assert families["slurm_pending_jobs"].samples[0].timestamp.sec == NOW - 5
    assert families["metrics_ingest_requests"].type == "counter"
    assert families["metrics_ingest_flush_duration_seconds"].type == "histogram"
    plain = await client.get("/metrics")
    assert plain.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "# EOF" not in await plain.text()
