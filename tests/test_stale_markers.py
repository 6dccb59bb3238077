"""Staleness markers from remote_write: kept (not skipped), and PromQL ends a series at its
marker as Prometheus does (the compliance suite's demo_intermittent_metric case); a marker
is not a point of a range; the purge and delete_series take markers along. Both engines."""

from __future__ import annotations

import struct
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from bench.encode import snappy, write_request
from metrics_ingest import retention
from metrics_ingest.config import Settings
from metrics_ingest.deleting import delete_series
from metrics_ingest.keys import TELEMETRY, WRITER
from metrics_ingest.selectors import parse_selector
from tests.conftest import AUTH, Clock, rows

Client = TestClient[web.Request, web.Application]
NOW = 1_795_000_000
STALE = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]
HEADERS = {**AUTH, "Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
           "X-Prometheus-Remote-Write-Version": "0.1.0"}
UP = {"__name__": "up", "job": "node", "instance": "a:1"}


async def send(client: Client, *series: tuple[dict[str, str], list[tuple[float, int]]]
               ) -> None:
    body = snappy(write_request(list(series)))
    response = await client.post("/api/v1/write", data=body, headers=HEADERS)
    assert response.status == 204, await response.text()


async def instant(client: Client, query: str, at: float) -> list[dict[str, Any]]:
    answer = await (await client.get("/api/v1/query",
                                     params={"query": query, "time": str(at)})).json()
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


async def test_a_marker_ends_the_series_until_its_next_sample(client: Client,
                                                              clock: Clock) -> None:
    clock.pinned = NOW
    await send(client, (UP, [(1.0, (NOW - 60) * 1000), (1.0, (NOW - 30) * 1000)]))
    await send(client, (UP, [(STALE, (NOW - 15) * 1000)]))
    assert [r["value"][1] for r in await instant(client, "up", NOW - 20)] == ["1"]
    assert await instant(client, "up", NOW - 15) == []  # within the lookback, but ended
    assert await instant(client, "up", NOW - 5) == []
    assert await instant(client, "timestamp(up)", NOW - 5) == []
    # A marker is no point of a range: two samples counted, not three.
    counted = await instant(client, "count_over_time(up[5m])", NOW)
    assert [r["value"][1] for r in counted] == ["2"]
    await send(client, (UP, [(0.0, (NOW - 10) * 1000)]))
    assert [r["value"][1] for r in await instant(client, "up", NOW - 5)] == ["0"]
    # Stored, so no longer counted as skipped.
    text = await (await client.get("/metrics")).text()
    assert 'reason="stale_marker"' not in text


async def test_markers_in_the_batch_of_their_series_first_sample(client: Client,
                                                                  clock: Clock) -> None:
    clock.pinned = NOW
    fresh = {"__name__": "fresh", "job": "node"}
    unknown = {"__name__": "never_pushed", "job": "node"}
    await send(client, (fresh, [(5.0, (NOW - 20) * 1000), (STALE, (NOW - 10) * 1000)]),
               (unknown, [(STALE, (NOW - 10) * 1000)]))
    assert await instant(client, "fresh", NOW - 5) == []
    assert [r["value"][1] for r in await instant(client, "fresh", NOW - 15)] == ["5"]
    # A marker of a series never stored ends nothing and creates no series.
    series = await (await client.get("/api/v1/series",
                                     params={"match[]": "never_pushed"})).json()
    assert series["data"] == []


async def test_a_sample_and_a_marker_of_the_same_second_the_sample_stands(
        client: Client, clock: Clock) -> None:
    clock.pinned = NOW
    await send(client, (UP, [(3.0, (NOW - 10) * 1000 + 200)]))
    await send(client, (UP, [(STALE, (NOW - 10) * 1000 + 700)]))  # the same whole second
    assert [r["value"][1] for r in await instant(client, "up", NOW)] == ["3"]


async def test_purge_and_delete_take_markers_along(client: Client, clock: Clock,
                                                   settings: Settings) -> None:
    clock.pinned = NOW
    old, recent = NOW - 30 * 86400, NOW - 100
    await send(client, ({"__name__": "gone", "job": "j"}, [(1.0, old * 1000)]),
               ({"__name__": "kept", "job": "j"}, [(1.0, old * 1000), (1.0, recent * 1000)]))
    await send(client, ({"__name__": "gone", "job": "j"}, [(STALE, (NOW - 200) * 1000)]),
               ({"__name__": "kept", "job": "j"}, [(STALE, (old + 5) * 1000),
                                                    (STALE, (NOW - 50) * 1000)]))
    assert rows(settings, "SELECT count(*) FROM stale_markers") == [(3,)]
    app = client.app
    await retention.purge(app[WRITER], app[TELEMETRY], 7, NOW)
    # The expired marker went, and the forgotten series' (newer than the cutoff) with it.
    assert rows(settings, "SELECT timestamp FROM stale_markers") == [(NOW - 50,)]
    await delete_series(app[WRITER], [parse_selector("kept")], NOW - 60, NOW)
    assert rows(settings, "SELECT count(*) FROM stale_markers") == [(0,)]
