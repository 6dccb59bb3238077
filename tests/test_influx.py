"""Influx line protocol in: the parser, both write endpoints, every way Influx clients
authenticate, and the official influxdb-client package against the live app."""

from __future__ import annotations

import asyncio
import base64
import gzip

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from metrics_ingest.config import Settings
from metrics_ingest.formats.influx import metric_name, parse_body
from metrics_ingest.model import PushInvalid, SampleGroup
from tests.conftest import TOKEN, Clock, rows

Client = TestClient[web.Request, web.Application]
NOW = 1_795_000_000.0
NS = 1_795_000_000 * 10**9

# Small shapes of Telegraf's cpu, mem, disk and slurm inputs (tests/test_telegraf.py feeds
# whole batches from tests/fixtures/telegraf/).
TELEGRAF = f"""\
cpu,cpu=cpu-total,host=node01 usage_idle=92.5,usage_user=5.125,usage_system=2.375 {NS}
mem,host=node01 used=8123456789i,available_percent=41.9,active=4096u {NS}
disk,device=nvme0n1p2,fstype=ext4,host=node01,mode=rw,path=/scratch free=1.2e12,used_percent=77 {NS}
slurm_partition,cluster=alpha,name=gpu,source=hpc alloc_cpus=120i,idle_cpus=8i,up=true {NS}
"""


def groups_of(body: str, precision: str = "n", source: str = "src") -> list[SampleGroup]:
    return parse_body(body, precision, source, NOW).groups


def test_telegraf_shaped_body() -> None:
    groups = groups_of(TELEGRAF, source="telegraf")
    assert groups[0] == SampleGroup(
        "telegraf", '{"cpu":"cpu-total","host":"node01"}', 1_795_000_000,
        ["cpu_usage_idle", "cpu_usage_user", "cpu_usage_system"], [92.5, 5.125, 2.375])
    assert groups[1].values == [8123456789.0, 41.9, 4096.0]
    assert groups[2].names == ["disk_free", "disk_used_percent"]
    slurm = groups[3]
    assert slurm.source == "telegraf"  # the write's db/bucket, whatever the point's tag says
    assert slurm.labels == '{"cluster":"alpha","exported_source":"hpc","name":"gpu"}'
    assert slurm.values == [120.0, 8.0, 1.0]


@pytest.mark.parametrize(("line", "name", "labels", "value"), [
    ("my\\ measure,tag\\ key=va\\,lue f\\=x=1", "my_measure_f_x", '{"tag_key":"va,lue"}', 1.0),
    ("weather,location=us\\=west temperature=82 ", "weather_temperature",
     '{"location":"us=west"}', 82.0),
    ("9lives,__private=1,source=x v=-1.5e-3", "_9lives_v",
     '{"exported_source":"x","tag_private":"1"}', -0.0015),
    ('m,name=12"\\ wafer v=2', "m_v", '{"name":"12\\" wafer"}', 2.0),
    ("m flag=F", "m_flag", "", 0.0),
    ("m big=-9223372036854775808i", "m_big", "", -9223372036854775808.0),
])
def test_line_forms(line: str, name: str, labels: str, value: float) -> None:
    [group] = groups_of(line, "s")
    assert (group.names[0], group.labels, group.values[0]) == (name, labels, value)


@pytest.mark.parametrize(("precision", "stamp"), [
    ("n", 1_795_000_000_999_999_999), ("ns", 1_795_000_000 * 10**9), ("u", 1_795_000_000_500_000),
    ("us", 1_795_000_000 * 10**6), ("ms", 1_795_000_000_999), ("s", 1_795_000_000),
    ("m", 1_795_000_000 // 60), ("h", 1_795_000_000 // 3600),
])
def test_precisions(precision: str, stamp: int) -> None:
    [group] = groups_of(f"m v=1 {stamp}", precision)
    expected = {"m": 1_795_000_000 // 60 * 60, "h": 1_795_000_000 // 3600 * 3600}
    assert group.timestamp == expected.get(precision, 1_795_000_000)


def test_no_timestamp_means_receipt_time() -> None:
    assert groups_of("m v=1")[0].timestamp == int(NOW)


def test_errors_name_the_line() -> None:
    body = "ok v=1\nbad\n# comment\n\nm s=\"text\"\nm v=1 notatime\nm v=abc\nm,t v=1\n"
    with pytest.raises(PushInvalid) as caught:
        parse_body(body, "n", "src", NOW)
    paths = [(error.path, error.error.split(" ")[0]) for error in caught.value.errors]
    assert paths == [("line 2", "expected"), ("line 6", "timestamp"), ("line 7", "field"),
                     ("line 8", "tag")]


def test_string_fields_are_skipped_or_refused() -> None:
    body = 'job,id=1 state="RUNNING",cpus=4i,nodes="cn[01-02]",ok=true\njob,id=2 state="PD"'
    parsed = parse_body(body, "n", "alpha", NOW)
    [group] = parsed.groups
    assert (group.names, group.values) == (["job_cpus", "job_ok"], [4.0, 1.0])
    assert parsed.skip_counts == {("string_field", "alpha"): 3}
    with pytest.raises(PushInvalid, match="string field state is not a metric"):
        parse_body(body, "n", "alpha", NOW, "reject")


@pytest.mark.parametrize(("stamp", "precision", "words"), [
    ("1795000000", "ns", "read with precision=ns is 1970-01-01T00:00:01Z, more than 365 days "
     "in the past (samples must lie within [now - 365 days, now + 1 hour]); read with "
     "precision=s it is 2026-11-18T"),
    ("1795000000000", "s", "more than 1 hour in the future"),
    ("1795000000000", "n", "; read with precision=ms it is 2026-11-18T"),
])
def test_timestamp_bounds_say_how_they_were_read(stamp: str, precision: str,
                                                 words: str) -> None:
    with pytest.raises(PushInvalid) as caught:
        parse_body(f"m v=1 {stamp}", precision, "src", NOW)
    assert words in caught.value.errors[0].error


def test_metric_name_sanitising() -> None:
    assert metric_name("cpu", "usage idle") == "cpu_usage_idle"
    assert metric_name("système", "température") == "syst_me_temp_rature"
    assert metric_name("2xx", "count") == "_2xx_count"


async def test_v1_write(client: Client, settings: Settings) -> None:
    body = f"cpu,host=n1 usage_idle=90 {NS}\ncpu,host=n2 usage_idle=80 {NS}"
    response = await client.post("/write", params={"db": "telegraf", "precision": "ns"},
                                 data=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status == 204
    stored = rows(settings, "SELECT source, metric_name, metric_value, labels"
                  " FROM metrics ORDER BY labels")
    assert stored == [("telegraf", "cpu_usage_idle", 90.0, '{"host":"n1"}'),
                      ("telegraf", "cpu_usage_idle", 80.0, '{"host":"n2"}')]


@pytest.mark.parametrize("auth", [
    {"Authorization": f"Token {TOKEN}"},
    {"Authorization": f"Bearer {TOKEN}"},
    {"Authorization": "Basic " + base64.b64encode(f"telegraf:{TOKEN}".encode()).decode()},
])
async def test_v2_write_and_its_credentials(client: Client, clock: Clock,
                                            auth: dict[str, str]) -> None:
    clock.pinned = NOW
    response = await client.post("/api/v2/write", params={"bucket": "hpc", "org": "x",
                                                          "precision": "s"},
                                 data=gzip.compress(b"slurm jobs_pending=42i 1795000000"),
                                 headers={**auth, "Content-Encoding": "gzip",
                                          "Content-Type": "text/plain; charset=utf-8"})
    assert response.status == 204, await response.text()
    text = await (await client.get("/metrics")).text()
    assert 'slurm_jobs_pending{source="hpc"} 42 1795000000000' in text


async def test_v1_password_parameter(client: Client) -> None:
    response = await client.post("/write", params={"db": "hpc", "u": "x", "p": TOKEN},
                                 data="m v=1")
    assert response.status == 204


@pytest.mark.parametrize("auth", [{}, {"Authorization": "Token wrong"},
                                  {"Authorization": "Basic bm90OmJhc2U2NA=="}])
async def test_bad_credentials(client: Client, auth: dict[str, str]) -> None:
    response = await client.post("/api/v2/write", params={"bucket": "hpc"}, data="m v=1",
                                 headers=auth)
    assert response.status == 401


@pytest.mark.parametrize(("params", "body", "headers", "status", "fragment"), [
    ({"db": "hpc"}, "m v=1 1795000000", {}, 400, "add precision=s"),
    ({"db": "hpc", "precision": "xs"}, "m v=1", {}, 400, "precision"),
    ({"db": "bad db"}, "m v=1", {}, 400, "source"),
    ({}, "m v=1", {}, 400, "a write needs ?db="),
    ({"db": "hpc"}, "m v=1", {"Content-Type": "application/json"}, 415, "line protocol"),
    ({"db": "hpc"}, "", {}, 400, "no line"),
])
async def test_v1_errors(client: Client, params: dict[str, str], body: str,
                         headers: dict[str, str], status: int, fragment: str) -> None:
    response = await client.post("/write", params=params, data=body.encode(),
                                 headers={"Authorization": f"Bearer {TOKEN}",
                                          "Content-Type": "text/plain", **headers})
    assert response.status == status
    assert fragment in (await response.json())["error"]


async def test_official_influxdb_client(client: Client, clock: Clock) -> None:
    clock.pinned = NOW
    from influxdb_client import InfluxDBClient, Point, WritePrecision
    from influxdb_client.client.write_api import SYNCHRONOUS

    url = str(client.make_url("/")).rstrip("/")

    def write_with_the_client() -> None:
        with InfluxDBClient(url=url, token=TOKEN, org="hpc-centre") as influx:
            writer = influx.write_api(write_options=SYNCHRONOUS)
            writer.write(bucket="hpc", record=[
                Point("slurm").tag("partition", "gpu").field("pending", 7)
                .time(1_795_000_000, WritePrecision.S),
                Point("slurm").tag("partition", "cpu").field("pending", 3.5)
                .time(1_795_000_000, WritePrecision.S),
            ])
            writer.write(bucket="hpc", record="node,host=n7 load1=0.5 1795000000000000000")

    await asyncio.to_thread(write_with_the_client)
    response = await client.get("/api/metrics", params={"source": "hpc", "window": "1w"})
    got = sorted((r["metric_name"], str(r.get("labels")), r["metric_value"])
                 for r in await response.json())
    assert got == [("node_load1", "{'host': 'n7'}", 0.5),
                   ("slurm_pending", "{'partition': 'cpu'}", 3.5),
                   ("slurm_pending", "{'partition': 'gpu'}", 7)]


@pytest.mark.parametrize(("body", "words"), [
    ("m,ü=1,ö=2 v=1", "tags 'ü' and 'ö' would both be the label _"),
    ("m,host-name=a v=1\nm,host_name=b v=2", "tags 'host-name' and 'host_name' would both be"),
    ("cpu usage-idle=1,usage_idle=2", "would both be the metric cpu_usage_idle"),
    ("cpu-x v=1\ncpu_x v=2", "field 'v' of 'cpu_x' and field 'v' of 'cpu-x' would both be"),
])
def test_names_that_would_merge_are_refused(body: str, words: str) -> None:
    with pytest.raises(PushInvalid) as caught:
        parse_body(body, "n", "src", NOW)
    assert words in str(caught.value.errors)
