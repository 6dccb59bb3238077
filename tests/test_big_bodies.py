"""Big bodies are parsed in worker processes (parsing.py) with the same results and errors as
small ones, and a body holding more samples than a push may is refused as soon as that is
known, without storing anything."""

from __future__ import annotations

import gzip
import io
import time

import orjson
from aiohttp import web
from aiohttp.test_utils import TestClient

from bench.encode import snappy, write_request
from metrics_ingest.config import Settings
from metrics_ingest.parsing import INLINE_BYTES
from tests.conftest import AUTH, rows

Client = TestClient[web.Request, web.Application]
RW = {**AUTH, "Content-Encoding": "snappy", "Content-Type": "application/x-protobuf"}


def influx_lines(count: int, stamp: int, start: int = 0) -> bytes:
    return "".join(f"job_usage,job_id={start + i},partition=cpu cpu={i % 97}i,mem={i}.5 "
                   f"{stamp}\n" for i in range(count)).encode()


def stored(settings: Settings) -> int:
    return int(rows(settings, "SELECT count(*) FROM samples")[0][0])


async def test_big_bodies_of_every_format(client: Client, settings: Settings) -> None:
    now = int(time.time()) - 10
    body = influx_lines(30_000, now)
    assert len(body) > INLINE_BYTES
    response = await client.post("/write", params={"db": "a", "precision": "s"},
                                 data=io.BytesIO(body),
                                 headers=AUTH)
    assert response.status == 204, await response.text()
    assert stored(settings) == 60_000
    zipped = gzip.compress(influx_lines(20_000, now, start=100_000))
    response = await client.post("/api/v2/write", params={"bucket": "b", "precision": "s"},
                                 data=io.BytesIO(zipped),
                                 headers={**AUTH, "Content-Encoding": "gzip"})
    assert response.status == 204, await response.text()
    assert stored(settings) == 100_000
    push = orjson.dumps([{"source": "c", "labels": {"job_id": str(job)}, "timestamp": now,
                          "metrics": {"cpu": job, "state": "RUNNING"}}
                         for job in range(5_000)])
    assert len(push) > INLINE_BYTES
    response = await client.post("/ingest", data=io.BytesIO(push), headers=AUTH)
    answer = await response.json()
    assert answer["inserted"] == 5_000
    assert len(answer["skipped"]) == 100  # listed up to 100; all 5,000 are counted
    text = "".join(f'node_job_cpu{{job_id="{job}"}} {job}\n' for job in range(20_000))
    response = await client.put("/metrics/job/jobs", data=io.BytesIO(text.encode()), headers=AUTH)
    assert response.status == 200, await response.text()
    series = [({"__name__": "rw_job_cpu", "job_id": str(job), "job": "rw"},
               [(float(job), now * 1000)]) for job in range(20_000)]
    response = await client.post("/api/v1/write", data=io.BytesIO(snappy(write_request(series))),
                                 headers=RW)
    assert response.status == 204, await response.text()
    assert stored(settings) == 145_000
    metrics = await (await client.get("/metrics")).text()
    assert 'metrics_ingest_skipped_samples_total{reason="not_a_number",source="c"} 5000' in metrics


async def test_errors_from_a_worker_name_the_line(client: Client, settings: Settings) -> None:
    now = int(time.time())
    body = influx_lines(20_000, now) + b"broken line\n"
    response = await client.post("/write", params={"db": "a", "precision": "s"},
                                 data=io.BytesIO(body),
                                 headers=AUTH)
    assert response.status == 400
    assert (await response.json())["errors"] == [
        {"path": "line 20001", "error": "field 'line' is not key=value"}]
    stamped = "".join(f"x_{i} {i} 1795000000000\n" for i in range(20_000))
    response = await client.put("/metrics/job/late", data=io.BytesIO(stamped.encode()),
                                headers=AUTH)
    assert response.status == 400
    assert "must not have timestamps" in (await response.json())["error"]
    assert stored(settings) == 0
    text = await (await client.get("/metrics")).text()
    assert 'metrics_ingest_rejected_pushes_total{reason="invalid",source="a"} 1' in text
    assert 'push_failure_time_seconds{source="late",instance="",job="late"} 1' in text


async def test_too_many_samples_is_refused_early(client: Client, settings: Settings) -> None:
    now = int(time.time())
    body = influx_lines(120_000, now)  # 240,000 fields (8 MB): more than one push may hold
    started = time.perf_counter()
    response = await client.post("/write", params={"db": "a", "precision": "s"},
                                 data=io.BytesIO(body),
                                 headers=AUTH)
    elapsed = time.perf_counter() - started
    assert response.status == 413
    assert "the push holds more than 100000 samples" in (await response.json())["error"]
    assert stored(settings) == 0
    print(f"240,000 fields refused after {elapsed:.2f} s")
    push = orjson.dumps([{"source": "c", "metrics": {f"m{i}": i for i in range(1000)}}] * 101)
    response = await client.post("/ingest", data=io.BytesIO(push), headers=AUTH)
    assert response.status == 413
    series = [({"__name__": "x", "i": str(i)}, [(1.0, now * 1000)]) for i in range(100_001)]
    response = await client.post("/api/v1/write", data=io.BytesIO(snappy(write_request(series))),
                                 headers=RW)
    assert response.status == 413
    text = await (await client.get("/metrics")).text()
    assert 'metrics_ingest_rejected_pushes_total{reason="too_large",source="a"} 1' in text
    assert 'metrics_ingest_rejected_pushes_total{reason="too_large",source="c"} 1' in text
