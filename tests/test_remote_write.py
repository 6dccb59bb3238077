"""Prometheus remote_write 1.0 in: the decoder against an independent encoder, and the HTTP
endpoint's answers (204 / 400 / 415 / 401)."""

from __future__ import annotations

import math
import struct

import cramjam
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bench.encode import snappy, write_request
from metrics_ingest.formats.remote_write import Undecodable, decode, decompress
from metrics_ingest.model import FamilyMeta, SampleGroup
from tests.conftest import AUTH, Clock

Client = TestClient[web.Request, web.Application]
NOW = 1_795_000_000.0
STALE = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]


def encode(series: list[tuple[dict[str, str], list[tuple[float, int]]]]) -> bytes:
    return write_request(series)


def test_decode_maps_job_name_and_milliseconds() -> None:
    payload = encode([
        ({"__name__": "up", "job": "node", "instance": "n1:9100"}, [(1.0, 1_795_000_000_500)]),
        ({"__name__": "node_load1", "job": "node", "instance": "n1:9100"},
         [(0.5, 1_795_000_000_900)]),
        ({"__name__": "slurm_jobs", "source": "hpc", "job": "ignored"},
         [(42.0, 1_794_999_999_000)]),
        ({"__name__": "neg_ts", "job": "x"}, [(1.0, -5)]),
    ])
    decoded = decode(payload, None, NOW)
    assert decoded.groups == [
        SampleGroup("node", '{"instance":"n1:9100","job":"node"}', 1_795_000_000,
                    ["up", "node_load1"], [1.0, 0.5]),
        SampleGroup("hpc", '{"job":"ignored"}', 1_794_999_999, ["slurm_jobs"], [42.0]),
    ]
    assert decoded.skipped == {("out_of_range", "x"): 1}
    # ?source= names the source of series without a source label; job stays a label.
    explicit = decode(payload, "cluster-a", NOW)
    assert [(g.source, g.labels) for g in explicit.groups] == [
        ("cluster-a", '{"instance":"n1:9100","job":"node"}'), ("hpc", '{"job":"ignored"}')]


def test_decode_skips_what_cannot_be_stored() -> None:
    payload = encode([
        ({"__name__": "a", "job": "j"}, [(STALE, 1_795_000_000_000), (2.0, 1_795_000_001_000)]),
        ({"__name__": "b", "job": "j"}, [(math.nan, 1_795_000_000_000), (math.inf, 1)]),
        ({"__name__": "bad-name", "job": "j"}, [(1.0, 1_795_000_000_000)]),
        ({"job": "no name"}, [(1.0, 1_795_000_000_000)]),
        ({"__name__": "c", "job": "weird/job name", "__meta_x": "dropped"},
         [(3.0, 1_795_000_000_000)]),
    ])
    decoded = decode(payload, None, NOW)
    assert [(g.source, g.names, g.values) for g in decoded.groups] == [
        ("j", ["a"], [2.0]), ("weird_job_name", ["c"], [3.0])]
    assert decoded.groups[1].labels == '{"job":"weird/job name"}'
    assert decoded.skipped == {("non_finite", "j"): 2, ("invalid_name", "j"): 1,
                               ("invalid_name", "no_name"): 1}
    # A staleness marker is kept apart, for PromQL (tests/test_stale_markers.py).
    assert [(g.source, g.labels, g.timestamp, g.names) for g in decoded.stale] == [
        ("j", '{"job":"j"}', 1_795_000_000, ["a"])]


def test_metadata_declares_families() -> None:
    payload = encode_with_metadata()
    decoded = decode(payload, None, NOW)
    assert decoded.families == {
        "http_requests_total": FamilyMeta("counter", "Requests served."),
        "latency_seconds": FamilyMeta("histogram", "Latency."),
        "go_gc_duration_seconds": FamilyMeta("summary", ""),
        "build_info": FamilyMeta("untyped", "An info family.")}


def encode_with_metadata() -> bytes:
    return write_request([], metadata=[(1, "http_requests_total", "Requests served."),
                                       (3, "latency_seconds", "Latency."),
                                       (5, "go_gc_duration_seconds", ""),
                                       (6, "build_info", "An info family."),
                                       (2, "metrics_ingest_x", "reserved: ignored")])


def test_default_source_when_no_job() -> None:
    decoded = decode(encode([({"__name__": "x"}, [(1.0, 1_795_000_000_000)])]), None, NOW)
    assert decoded.groups[0].source == "prometheus"


@pytest.mark.parametrize("payload", [b"\x0a\xff", b"\x0a\x05ab", b"\x0f", b"\x0a\x02\x0a\x09"])
def test_garbage_is_undecodable(payload: bytes) -> None:
    with pytest.raises(Undecodable):
        decode(payload, "p", NOW)


def test_snappy_bomb_is_refused_before_inflating() -> None:
    bomb = bytes(cramjam.snappy.compress_raw(b"\0" * 5_000_000))
    assert len(bomb) < 300_000
    with pytest.raises(OverflowError):
        decompress(bomb, 1_000_000)


RW_HEADERS = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
              "X-Prometheus-Remote-Write-Version": "0.1.0"}


async def test_endpoint_stores_and_answers_204(client: Client, clock: Clock) -> None:
    clock.pinned = NOW
    body = snappy(encode([({"__name__": "up", "job": "node", "instance": "a:1"},
                           [(1.0, 1_795_000_000_000)])]))
    response = await client.post("/api/v1/write", data=body, headers={**AUTH, **RW_HEADERS})
    assert response.status == 204
    text = await (await client.get("/metrics")).text()
    assert 'up{source="node",instance="a:1",job="node"} 1 1795000000000' in text


@pytest.mark.parametrize(("headers", "body", "status"), [
    ({**RW_HEADERS, "Content-Encoding": "gzip"}, b"x", 415),
    ({**RW_HEADERS, "Content-Type": "application/x-protobuf;proto=io.prometheus.write.v2.Request"},
     b"x", 415),
    ({**RW_HEADERS, "Content-Type": "application/json"}, b"x", 415),
    (RW_HEADERS, b"not snappy at all", 400),
    (RW_HEADERS, bytes(cramjam.snappy.compress_raw(b"\x0a\xff")), 400),
])
async def test_endpoint_errors(client: Client, headers: dict[str, str], body: bytes,
                               status: int) -> None:
    response = await client.post("/api/v1/write", data=body, headers={**AUTH, **headers})
    assert response.status == status
    assert (await response.json())["status"] == "error"


async def test_endpoint_needs_the_push_token(client: Client) -> None:
    response = await client.post("/api/v1/write", data=b"", headers=RW_HEADERS)
    assert response.status == 401


async def test_dropped_samples_are_counted(client: Client) -> None:
    body = snappy(encode([({"__name__": "a", "job": "j"}, [(math.inf, 1_795_000_000_000)])]))
    assert (await client.post("/api/v1/write", data=body,
                              headers={**AUTH, **RW_HEADERS})).status == 204
    text = await (await client.get("/metrics")).text()
    assert ('metrics_ingest_skipped_samples_total{reason="non_finite",source="j"} 1'
            in text)
