"""The Pushgateway push API: grouping paths, text bodies, PUT/POST/DELETE semantics, checked
with prometheus_client's own push functions against the live app and against a real
Pushgateway (Debian's prometheus-pushgateway) fed the same sequence of pushes."""

from __future__ import annotations

import asyncio
import base64
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    delete_from_gateway,
    push_to_gateway,
    pushadd_to_gateway,
)
from prometheus_client.exposition import default_handler
from prometheus_client.parser import text_string_to_metric_families

from metrics_ingest.formats.pushgateway import parse_grouping, parse_text
from metrics_ingest.model import FamilyMeta, PushInvalid
from tests.conftest import TOKEN, free_port, required_tool, rows, wait_until

Client = TestClient[web.Request, web.Application]
NOW = 1_795_000_000.0


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(("path", "source", "labels"), [
    ("job/nightly", "nightly", {}),
    ("job/nightly/instance/n1", "nightly", {"instance": "n1"}),
    (f"job@base64/{b64('nightly')}/path@base64/{b64('/scratch/a b')}", "nightly",
     {"path": "/scratch/a b"}),
    ("job/x/instance/n1/zone/eu", "x", {"instance": "n1", "zone": "eu"}),
])
def test_grouping_paths(path: str, source: str, labels: dict[str, str]) -> None:
    grouping = parse_grouping(path)
    assert (grouping.source, grouping.labels) == (source, labels)


@pytest.mark.parametrize("path", [
    "job", "job/a/instance", "instance/n1/job/a", "job/bad job", "job/a/__x/1",
    "job/a/source/s", "job/a/job/b", "job@base64/!!!", "job@zip/a", "job/a/instance/",
])
def test_bad_grouping_paths(path: str) -> None:
    with pytest.raises(PushInvalid):
        parse_grouping(path)


def test_text_body_and_label_precedence() -> None:
    grouping = parse_grouping("job/nightly/instance/n1")
    body = ('# TYPE done gauge\ndone{instance="body",job="ignored",source="s",x="1"} 1\n'
            '# TYPE q summary\nq{quantile="0.5"} NaN\nq_count 0\nq_sum 0\n')
    parsed = parse_text(body, grouping, NOW, "post")
    groups, push = parsed.groups, parsed.group
    assert push is not None
    # As the Pushgateway: the path's labels and job win, instance="" when there is none.
    assert [(g.labels, g.names, g.values) for g in groups] == [
        ('{"exported_source":"s","instance":"n1","job":"nightly","x":"1"}', ["done"], [1.0]),
        ('{"instance":"n1","job":"nightly"}', ["q_count", "q_sum"], [0.0, 0.0])]
    assert {g.timestamp for g in groups} == {int(NOW)}
    assert push.families == {"done": "done", "q_count": "q", "q_sum": "q"}
    assert push.pushed_families == {"done", "q"}
    assert parsed.skip_counts == {("non_finite", "nightly"): 1}
    assert parsed.families == {"done": FamilyMeta("gauge"), "q": FamilyMeta("summary")}
    assert parsed.typing == "strict"
    bare = parse_text("x 1\n", parse_grouping("job/j"), NOW, "put")
    assert bare.groups[0].labels == '{"instance":"","job":"j"}'
    assert bare.families == {"x": FamilyMeta("untyped")}


@pytest.mark.parametrize("body", ["x 1 1795000000000\n", "not a metric line\n", "x{ 1\n",
                                  "# TYPE x info\nx 1\n",
                                  "# TYPE x counter\n# TYPE x gauge\nx 1\n"])
def test_bad_text_bodies(body: str) -> None:
    with pytest.raises(PushInvalid):
        parse_text(body, parse_grouping("job/a"), NOW, "put")


def bearer_handler(url: str, method: str, timeout: float | None, headers: list[tuple[str, str]],
                   data: bytes) -> Callable[[], None]:
    return default_handler(url, method, timeout,
                           [*headers, ("Authorization", f"Bearer {TOKEN}")], data)


def registries() -> dict[str, CollectorRegistry]:
    first = CollectorRegistry()
    Gauge("batch_last_success", "last success", registry=first).set(1_795_000_000)
    Counter("batch_records", "records", ["table"], registry=first).labels("jobs").inc(42)
    histogram = Histogram("batch_duration_seconds", "duration", buckets=(1, 5), registry=first)
    histogram.observe(0.5)
    histogram.observe(3)
    extra = CollectorRegistry()
    Gauge("batch_extra", "extra", registry=extra).set(7)
    again = CollectorRegistry()
    Gauge("batch_last_success", "last success", registry=again).set(1_795_000_100)
    return {"first": first, "extra": extra, "again": again}


GROUP_1 = {"instance": "n1"}
GROUP_2 = {"instance": "n2", "zone": "a/b"}  # prometheus_client sends this one as @base64


def sequence(regs: dict[str, CollectorRegistry]) -> list[tuple[str, Callable[[str, Any], None]]]:
    """The pushes, in order: (what, call(gateway, handler))."""
    return [
        ("PUT group 1", lambda url, h: push_to_gateway(
            url, "nightly", regs["first"], grouping_key=GROUP_1, handler=h)),
        ("POST a new family", lambda url, h: pushadd_to_gateway(
            url, "nightly", regs["extra"], grouping_key=GROUP_1, handler=h)),
        ("POST replaces a family", lambda url, h: pushadd_to_gateway(
            url, "nightly", regs["again"], grouping_key=GROUP_1, handler=h)),
        ("PUT group 2", lambda url, h: push_to_gateway(
            url, "nightly", regs["first"], grouping_key=GROUP_2, handler=h)),
        ("PUT replaces group 1", lambda url, h: push_to_gateway(
            url, "nightly", regs["extra"], grouping_key=GROUP_1, handler=h)),
        ("DELETE group 2", lambda url, h: delete_from_gateway(
            url, "nightly", grouping_key=GROUP_2, handler=h)),
    ]


Series = set[tuple[str, frozenset[tuple[str, str]], float]]


def exported(text: str, job_label: str) -> Series:
    """The pushed series of an exposition, labels normalised: our `source` is the
    Pushgateway's `job`, and empty labels are absent labels."""
    found: Series = set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.startswith("batch_"):
                continue
            labels = {("job" if k == job_label else k): v
                      for k, v in sample.labels.items() if v}
            found.add((sample.name, frozenset(labels.items()), sample.value))
    return found


async def test_push_functions_against_the_live_app(client: Client, settings: Any) -> None:
    url = str(client.make_url("/")).rstrip("/")
    regs = registries()
    for what, call in sequence(regs):
        await asyncio.to_thread(call, url, bearer_handler)
        text = await (await client.get("/metrics")).text()
        series = exported(text, "source")
        if what == "PUT group 1":
            assert ("batch_records_total", frozenset({("job", "nightly"), ("instance", "n1"),
                                                      ("table", "jobs")}), 42.0) in series
            assert "batch_last_success{" in text
            assert " 1795000000 " not in text  # group members carry no timestamps
    final = exported(await (await client.get("/metrics")).text(), "source")
    assert {name for name, _, _ in final} == {"batch_extra"}
    # History stays in the database: the replaced and deleted series are still stored.
    assert rows(settings, "SELECT count(*) FROM metrics WHERE metric_name ="
                " 'batch_records_total'") == [(2,)]


async def test_auth_and_errors(client: Client) -> None:
    path = "/metrics/job/nightly"
    assert (await client.put(path, data="x 1\n")).status == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert (await client.put(path, data="x 1 123\n", headers=auth)).status == 400
    assert (await client.put("/metrics/job/bad%20job", data="x 1\n", headers=auth)).status == 400
    protobuf = {**auth, "Content-Type": "application/vnd.google.protobuf"}
    assert (await client.put(path, data=b"\x00", headers=protobuf)).status == 415
    assert (await client.get(path, headers=auth)).status == 405
    response = await client.delete("/metrics/job/never-pushed", headers=auth)
    assert response.status == 202


def pushgateway_binary() -> str:
    return required_tool("prometheus-pushgateway", "prometheus-pushgateway")


@pytest.fixture
def real_pushgateway(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    log = (tmp_path / "pushgateway.log").open("wb")
    process = subprocess.Popen([pushgateway_binary(), f"--web.listen-address=127.0.0.1:{port}"],
                               stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            with urllib.request.urlopen(url + "/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            assert process.poll() is None, "the Pushgateway exited"
            return False

    try:
        wait_until(ready, 30, "the Pushgateway")
        yield url
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def read_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        text: str = response.read().decode()
        return text


@pytest.mark.slow
async def test_same_series_as_a_real_pushgateway(client: Client, real_pushgateway: str) -> None:
    ours = str(client.make_url("/")).rstrip("/")
    regs = registries()
    for what, call in sequence(regs):
        await asyncio.to_thread(call, ours, bearer_handler)
        await asyncio.to_thread(call, real_pushgateway, default_handler)
        mine = exported(await (await client.get("/metrics")).text(), "source")
        theirs = exported(await asyncio.to_thread(read_text, real_pushgateway + "/metrics"),
                          "job")
        assert mine == theirs, f"after {what}: only ours {mine - theirs}, only theirs " \
                               f"{theirs - mine}"
    print(f"identical to the Pushgateway after {len(sequence(regs))} pushes; final: "
          f"{sorted(name for name, _, _ in mine)}")


@pytest.mark.parametrize(("value", "go"), [
    (1.0, "1"), (5.0, "5"), (0.005, "0.005"), (0.25, "0.25"), (2.5, "2.5"), (10.0, "10"),
    (100000.0, "100000"), (1e6, "1e+06"), (123456789.0, "1.23456789e+08"), (0.0001, "0.0001"),
    (0.00001, "1e-05"), (1.5e-7, "1.5e-07"), (float("inf"), "+Inf"), (0.0, "0"),
    (-2.5, "-2.5"), (1e21, "1e+21"), (0.1 + 0.2, "0.30000000000000004"),
])
def test_go_float_format(value: float, go: str) -> None:
    from metrics_ingest.formats.pushgateway import go_float

    assert go_float(value) == go
