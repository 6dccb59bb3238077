"""`GET /metrics`: golden text for the renderer, and the live endpoint checked by real parsers."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from metrics_ingest.config import Settings
from metrics_ingest.formats.exposition import (
    escape_help,
    escape_label_value,
    format_value,
    render_exposition,
)
from metrics_ingest.formats.stored import render_stored
from tests.conftest import AUTH, Clock, promtool, run_tool

Client = TestClient[web.Request, web.Application]
NOW = 1_795_000_000


def test_golden_stored_series() -> None:
    rows = [  # (metric_name, source, labels, value, timestamp, pinned)
        ("slurm_pending_jobs", "hpc", "", 42.0, NOW, 0),
        ("slurm_pending_jobs", "hpc2", '{"partition":"gpu"}', 3.5, NOW - 60, 0),
        ("temp", "server", '{"room":"a\\"b\\\\c\\nd"}', -0.0, NOW, 0),
    ]
    assert render_exposition(render_stored(rows, with_timestamps=True)).decode() == (
        "# HELP slurm_pending_jobs Metric from hpc, hpc2\n"
        "# TYPE slurm_pending_jobs gauge\n"
        'slurm_pending_jobs{source="hpc"} 42 1795000000000\n'
        'slurm_pending_jobs{source="hpc2",partition="gpu"} 3.5 1794999940000\n'
        "# HELP temp Metric from server\n"
        "# TYPE temp gauge\n"
        'temp{source="server",room="a\\"b\\\\c\\nd"} 0 1795000000000\n'
    )
    assert render_stored(rows[:1], with_timestamps=False)[-1] == (
        'slurm_pending_jobs{source="hpc"} 42')


@pytest.mark.parametrize(("value", "text"), [
    (42.0, "42"), (-3.0, "-3"), (0.1, "0.1"), (1e20, "1e+20"), (2.0**53, "9007199254740992.0"),
    (float("nan"), "NaN"), (float("inf"), "+Inf"), (float("-inf"), "-Inf"), (1.5e-7, "1.5e-07"),
])
def test_value_format(value: float, text: str) -> None:
    assert format_value(value) == text


def test_escaping() -> None:
    assert escape_label_value('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    assert escape_help('a"b\\c\nd') == 'a"b\\\\c\\nd'


async def push(client: Client, payload: Any) -> None:
    response = await client.post("/ingest", json=payload, headers=AUTH)
    assert response.status == 200, await response.text()


HOSTILE = ['say "hi"', "back\\slash", "new\nline", 'x"} evil_series 1\n# TYPE', "ünïcode ✓", "\\n"]


async def fill(client: Client) -> None:
    """Several sources, hostile label values, many families."""
    for i, value in enumerate(HOSTILE):
        await push(client, {"source": f"src-{i}.a_b", "labels": {"note": value, "idx": str(i)},
                            "metrics": {"shared_metric": i, "camelCase": i * 1.5,
                                        f"family_{i}": -i, "ratio:rate5m": 0.25}})
    await push(client, {"source": "hpc", "metrics": {f"slurm_m{i}": i for i in range(40)}})


async def test_metrics_parse_with_prometheus_client(client: Client) -> None:
    await fill(client)
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = await response.text()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    shared = families["shared_metric"]
    assert shared.documentation == "Metric from " + ", ".join(
        sorted(f"src-{i}.a_b" for i in range(len(HOSTILE))))
    notes = sorted(sample.labels["note"] for sample in shared.samples)
    assert notes == sorted(HOSTILE)
    assert {sample.labels["source"] for sample in shared.samples} == {
        f"src-{i}.a_b" for i in range(len(HOSTILE))}
    assert "evil_series" not in families
    assert len([name for name in families if name.startswith("slurm_m")]) == 40
    for name in ("metrics_ingest_samples_received", "metrics_ingest_requests",
                 "metrics_ingest_rejected_pushes", "metrics_ingest_queue_samples",
                 "metrics_ingest_batch_samples", "metrics_ingest_flush_duration_seconds",
                 "metrics_ingest_db_size_bytes", "metrics_ingest_purged_samples",
                 "metrics_ingest_last_purge_timestamp_seconds",
                 "metrics_ingest_last_push_timestamp_seconds"):
        assert name in families, name
    received = {s.labels["source"]: s.value for s in
                families["metrics_ingest_samples_received"].samples}
    assert received["hpc"] == 40
    # One HELP/TYPE per family: every family name appears in exactly one TYPE line.
    type_lines = [line for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(type_lines) == len({line.split()[2] for line in type_lines})


async def test_metrics_pass_promtool(client: Client, tmp_path: Path) -> None:
    tool = promtool()
    await fill(client)
    text = await (await client.get("/metrics")).text()
    _, output = await run_tool(tool, "check", "metrics", stdin=text)
    problems = output.strip().splitlines()
    # promtool's style lint may flag names users chose (camelCase, ratio:rate5m), never a
    # format error and never one of the service's own metrics.
    assert all("error while linting" not in line for line in problems), problems
    assert all(line.startswith(("camelCase", "ratio:rate5m")) for line in problems), problems


async def test_service_metrics_pass_promtool_lint_clean(client: Client) -> None:
    tool = promtool()
    await push(client, {"source": "hpc", "metrics": {"slurm_pending_jobs": 1}})
    await client.post("/ingest", json={}, headers={"Authorization": "Bearer bad"})
    text = await (await client.get("/metrics")).text()
    code, output = await run_tool(tool, "check", "metrics", stdin=text)
    assert code == 0, output


async def test_gzip_when_accepted(client: Client) -> None:
    await push(client, {"source": "hpc", "metrics": {"slurm_pending_jobs": 42}})
    response = await client.get("/metrics", headers={"Accept-Encoding": "gzip"},
                                auto_decompress=False)
    assert response.headers["Content-Encoding"] == "gzip"
    text = gzip.decompress(await response.read()).decode()
    assert 'slurm_pending_jobs{source="hpc"} 42 ' in text
    plain = await client.get("/metrics", headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers


async def test_only_fresh_series_newest_sample(client: Client, clock: Clock) -> None:
    clock.pinned = NOW
    await push(client, {"source": "hpc", "timestamp": NOW - 601, "metrics": {"stale": 1}})
    await push(client, {"source": "hpc", "timestamp": NOW - 100, "metrics": {"fresh": 1}})
    await push(client, {"source": "hpc", "timestamp": NOW - 50, "metrics": {"fresh": 2}})
    await push(client, {"source": "hpc", "timestamp": NOW - 500, "metrics": {"fresh": 3}})
    text = await (await client.get("/metrics")).text()
    assert "stale" not in text
    assert f'fresh{{source="hpc"}} 2 {(NOW - 50) * 1000}\n' in text
    clock.pinned = NOW + 560
    assert "fresh{" not in await (await client.get("/metrics")).text()


async def test_window_and_timestamps_are_settings(
    make_client: Callable[[Settings], Any], settings: Settings, clock: Clock
) -> None:
    client = await make_client(settings.replace(export_window=60, export_timestamps=False))
    clock.pinned = NOW
    await push(client, {"source": "hpc", "timestamp": NOW - 61, "metrics": {"old": 1}})
    await push(client, {"source": "hpc", "timestamp": NOW - 59, "metrics": {"new": 1}})
    text = await (await client.get("/metrics")).text()
    assert 'new{source="hpc"} 1\n' in text
    assert "old{" not in text


async def test_scrapes_see_every_commit_and_every_expiry(client: Client, clock: Clock) -> None:
    clock.pinned = NOW
    await push(client, {"source": "hpc", "timestamp": NOW - 10, "metrics": {"jobs": 1}})
    first = await (await client.get("/metrics")).text()
    assert f'jobs{{source="hpc"}} 1 {(NOW - 10) * 1000}' in first
    again = await (await client.get("/metrics")).text()
    stored = first.split("# HELP metrics_ingest_")[0]
    assert again.split("# HELP metrics_ingest_")[0] == stored  # nothing was written: same series
    await push(client, {"source": "hpc", "timestamp": NOW - 5, "metrics": {"jobs": 2}})
    second = await (await client.get("/metrics")).text()
    assert f'jobs{{source="hpc"}} 2 {(NOW - 5) * 1000}' in second
    clock.pinned = NOW - 5 + 600  # the last second the series is still fresh
    assert 'jobs{source="hpc"} 2' in await (await client.get("/metrics")).text()
    clock.pinned = NOW - 5 + 601
    assert "jobs{" not in await (await client.get("/metrics")).text()
