"""Telegraf as HPC sites run it: whole batches of inputs.slurm (diag, jobs, nodes, partitions,
reservations) and inputs.cpu/mem/disk, sent the way its influxdb (v1) and influxdb_v2 outputs
send them, plus the calls those outputs and influxdb-client make besides writes."""

from __future__ import annotations

import asyncio
import base64
import gzip
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from metrics_ingest.config import Settings
from metrics_ingest.formats.influx import parse_body
from tests.conftest import REPO, TOKEN, rows

Client = TestClient[web.Request, web.Application]
FIXTURES = REPO / "tests" / "fixtures" / "telegraf"
# Telegraf's v1 output: Basic auth (username/password), gzip, text/plain, ns timestamps.
V1_HEADERS = {"Authorization": "Basic " + base64.b64encode(f"telegraf:{TOKEN}".encode()).decode(),
              "Content-Encoding": "gzip", "Content-Type": "text/plain; charset=utf-8",
              "User-Agent": "Telegraf/1.30.0 Go/1.22.1"}
V2_HEADERS = {"Authorization": f"Token {TOKEN}", "Content-Encoding": "gzip",
              "Content-Type": "text/plain; charset=utf-8"}
# Every string field the fixture's lines carry (inputs.slurm's README lists them).
STRING_FIELDS = {"slurm_jobs": 9, "slurm_nodes": 3, "slurm_partitions": 2,
                 "slurm_reservations": 5}


def batch(name: str, when: float | None = None) -> str:
    stamp = str(int((when or time.time()) - 30) * 10**9)
    return (FIXTURES / name).read_text().replace("{ts}", stamp)


def test_every_slurm_measurement_is_stored_without_its_strings() -> None:
    text = batch("slurm.lp")
    parsed = parse_body(text, "n", "alpha", time.time())
    names = {name for group in parsed.groups for name in group.names}
    for measurement in ("slurm_diag", "slurm_jobs", "slurm_nodes", "slurm_partitions",
                        "slurm_reservations"):
        assert any(name.startswith(measurement + "_") for name in names), measurement
    # integers, floats and booleans are stored ...
    assert {"slurm_jobs_cpus", "slurm_jobs_tres_gres_gpu", "slurm_diag_bf_active",
            "slurm_nodes_cpu_load", "slurm_partitions_total_cpu",
            "slurm_reservations_core_count"} <= names
    # ... string fields are not, and are counted
    assert not names & {"slurm_jobs_state", "slurm_jobs_command", "slurm_nodes_state",
                        "slurm_partitions_nodes", "slurm_reservations_users"}
    jobs = sum(1 for line in text.splitlines() if line.startswith("slurm_jobs,"))
    nodes = sum(1 for line in text.splitlines() if line.startswith("slurm_nodes,"))
    expected = (jobs * STRING_FIELDS["slurm_jobs"] + nodes * STRING_FIELDS["slurm_nodes"]
                + 3 * STRING_FIELDS["slurm_partitions"] + STRING_FIELDS["slurm_reservations"])
    assert parsed.skip_counts == {("string_field", "alpha"): expected}
    # tag values with escapes and quotes come through as written
    labels = {group.labels for group in parsed.groups}
    assert any('"name":"train resnet50"' in label for label in labels)
    assert any('"name":"sweep,lr=0.01"' in label for label in labels)
    assert any('"name":"eval \\"v2\\""' in label for label in labels)
    # the plugin's own `source` tag (the slurmrestd host) is kept, renamed
    assert all('"exported_source":"slurmctl01.hpc.example.org"' in label for label in labels)


async def test_telegraf_v1_batch_is_stored(client: Client, settings: Settings) -> None:
    body = gzip.compress((batch("slurm.lp") + batch("system.lp")).encode())
    response = await client.post("/write", params={"db": "cluster-alpha"}, data=body,
                                 headers=V1_HEADERS)
    assert response.status == 204, await response.text()
    assert response.headers["X-Influxdb-Version"]
    [(sources, series)] = rows(settings, "SELECT min(source) || '/' || max(source),"
                               " count(*) FROM series")
    assert sources == "cluster-alpha/cluster-alpha"
    assert series > 250
    text = await (await client.get("/metrics")).text()
    assert 'slurm_jobs_cpus{source="cluster-alpha",exported_source="slurmctl01.hpc.example.org"' \
           ',host="hpc-mon01",job_id="40211",name="cfd_run"} 128 ' in text
    assert 'cpu_usage_idle{source="cluster-alpha",cpu="cpu-total",host="web01"} ' in text
    assert 'disk_used_percent{source="cluster-alpha",device="nvme0n1p3",fstype="ext4",' in text
    assert 'metrics_ingest_skipped_samples_total{reason="string_field",source="cluster-alpha"}' \
        in text


async def test_two_buckets_with_identical_tags_stay_apart(client: Client,
                                                          settings: Settings) -> None:
    """Two clusters' slurmrestd both answer on 127.0.0.1: the plugin tags every point
    source=127.0.0.1, and only the bucket tells them apart."""
    now = int(time.time())
    for bucket, cpus in (("alpha", 256), ("beta", 512)):
        body = (f"slurm_partitions,host=mon,name=cpu,source=127.0.0.1 total_cpu={cpus}i,"
                f'state="UP" {now * 10**9}\n')
        response = await client.post("/api/v2/write", params={"bucket": bucket, "org": "hpc"},
                                     data=gzip.compress(body.encode()), headers=V2_HEADERS)
        assert response.status == 204, await response.text()
    assert rows(settings, "SELECT source, metric_value FROM metrics"
                " WHERE metric_name = 'slurm_partitions_total_cpu' ORDER BY source") == [
        ("alpha", 256.0), ("beta", 512.0)]


async def test_string_fields_can_be_refused(make_client: Callable[[Settings], Any],
                                            settings: Settings) -> None:
    client: Client = await make_client(settings.replace(influx_string_fields="reject"))
    response = await client.post("/write", params={"db": "a"}, data=batch("slurm.lp"),
                                 headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status == 400
    body = await response.json()
    assert "string field" in body["error"]
    assert body["code"] == "invalid"
    assert body["message"] == body["error"]
    assert rows(settings, "SELECT count(*) FROM samples") == [(0,)]


async def test_ping_health_and_query(client: Client) -> None:
    for method in ("GET", "HEAD"):
        ping = await client.request(method, "/ping")
        assert ping.status == 204
        assert ping.headers["X-Influxdb-Version"]
        assert ping.headers["X-Influxdb-Build"] == "OSS"
    health = await client.get("/health")
    assert health.status == 200
    assert (await health.json())["status"] == "pass"
    # What Telegraf's v1 output sends at start: a form POST, Basic auth, no db.
    created = await client.post("/query", data={"q": 'CREATE DATABASE "telegraf"'},
                                headers={"Authorization": V1_HEADERS["Authorization"]})
    assert created.status == 200
    assert await created.json() == {"results": [{"statement_id": 0}]}
    now = int(time.time())
    await client.post("/write", params={"db": "telegraf", "precision": "s"},
                      data=f"m v=1 {now}", headers={"Authorization": f"Bearer {TOKEN}"})
    shown = await client.get("/query", params={"q": "SHOW DATABASES"},
                             headers={"Authorization": f"Token {TOKEN}"})
    assert await shown.json() == {"results": [{"statement_id": 0, "series": [
        {"name": "databases", "columns": ["name"], "values": [["telegraf"]]}]}]}
    refused = await client.get("/query", params={"q": "SELECT * FROM cpu"},
                               headers={"Authorization": f"Token {TOKEN}"})
    assert refused.status == 400
    assert "SHOW DATABASES and CREATE DATABASE" in (await refused.json())["error"]
    assert (await client.post("/query", data={"q": "SHOW DATABASES"})).status == 401


async def test_influxdb_client_ping_and_version(client: Client) -> None:
    from influxdb_client import InfluxDBClient

    url = str(client.make_url("/")).rstrip("/")

    def ask() -> tuple[bool, str]:
        with InfluxDBClient(url=url, token=TOKEN, org="hpc") as influx:
            return influx.ping(), influx.version()

    assert await asyncio.to_thread(ask) == (True, "1.8.10")


@pytest.mark.parametrize("name", ["slurm.lp", "system.lp"])
def test_fixtures_are_what_telegraf_writes(name: str) -> None:
    """Every fixture line is one point with a timestamp placeholder (no stray blank lines
    that would hide a parse problem)."""
    lines = Path(FIXTURES / name).read_text().splitlines()
    assert lines
    assert all(line.endswith(" {ts}") for line in lines)
