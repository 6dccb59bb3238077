"""/metrics keeps its stored part up to date incrementally (export.py). After every kind of
change a user can cause, the scraped series must equal a from-scratch read of the database."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path
from typing import Any

from bench.encode import snappy, write_request
from metrics_ingest import retention
from metrics_ingest.config import Settings
from metrics_ingest.export import ExportCache
from metrics_ingest.formats.exposition import OPENMETRICS, TEXT, Format
from metrics_ingest.keys import WRITER
from metrics_ingest.store import open_store
from tests.conftest import AUTH, Clock

NOW = 1_795_000_000.0


async def expected(db_path: Path, now: float, window: int, fmt: Format) -> str:
    """The stored part as a from-scratch render gives it: a fresh cache over its own
    connection, reading everything."""
    reader = open_store(db_path).open_export_reader()

    async def no_sync() -> None:
        return None

    try:
        pieces, _ = await ExportCache(reader, no_sync, window, True).pieces(fmt, now)
    finally:
        reader.close()
    return b"".join(pieces).decode()


async def scraped(client: Any, fmt: Format) -> str:
    """The stored part of a scrape: everything before the service's own families."""
    accept = "application/openmetrics-text" if fmt is OPENMETRICS else "text/plain"
    response = await client.get("/metrics", headers={"Accept": accept})
    assert response.status == 200
    text = await response.text()
    return text[:text.index("# HELP metrics_ingest_")]


async def check(client: Any, settings: Settings, clock: Clock) -> None:
    now = clock()
    for fmt in (TEXT, OPENMETRICS, TEXT):  # the second TEXT scrape reuses the cached body
        assert await scraped(client, fmt) == await expected(
            settings.db_path, now, settings.export_window, fmt)


async def test_every_change_shows_as_a_full_read_would(make_client: Any, tmp_path: Path,
                                                       clock: Clock) -> None:
    settings = Settings(db_path=tmp_path / "metrics.db", auth_tokens=("test-token",),
                        export_timestamps=True)
    clock.pinned = NOW
    client = await make_client(settings)
    rng = random.Random(7)

    async def push(source: str, stamp: float, metrics: dict[str, float],
                   labels: dict[str, str] | None = None) -> None:
        body: dict[str, Any] = {"source": source, "timestamp": int(stamp), "metrics": metrics}
        if labels:
            body["labels"] = labels
        assert (await client.post("/ingest", json=body, headers=AUTH)).status == 200

    await check(client, settings, clock)  # empty
    for host in range(20):
        await push("hpc", NOW - 10, {f"m{i}": rng.random() for i in range(5)},
                   {"host": f"h{host}"})
    await check(client, settings, clock)  # first load
    await push("hpc", NOW - 5, {"m1": 42.0}, {"host": "h3"})  # one series changes
    await check(client, settings, clock)
    await push("hpc", NOW - 500, {"m2": -1.0}, {"host": "h4"})  # older: latest keeps the newer
    await check(client, settings, clock)
    await push("other", NOW - 1, {"m1": 1.5, "brand_new": 2.0})  # a new source and family
    await check(client, settings, clock)

    # Pushgateway API: pinned members, then a PUT replacing them (hidden), then a DELETE.
    job = "/metrics/job/backup/instance/a"
    text = "backup_ok 1\nbackup_bytes 123\n"
    assert (await client.put(job, data=text, headers=AUTH)).status == 200
    assert (await client.put("/metrics/job/keep", data="kept 1\n", headers=AUTH)).status == 200
    await check(client, settings, clock)
    assert (await client.put(job, data="backup_ok 0\n", headers=AUTH)).status == 200
    await check(client, settings, clock)

    # Families: a histogram and a counter pushed with their types, then remote_write series
    # whose metadata arrives later (they move from gauges of their own into the family).
    typed = ("# TYPE lat histogram\n"
             'lat_bucket{le="1"} 1\nlat_bucket{le="+Inf"} 2\nlat_count 2\nlat_sum 1.5\n'
             "# HELP done_total Jobs done.\n# TYPE done_total counter\ndone_total 7\n")
    assert (await client.put("/metrics/job/typed", data=typed, headers=AUTH)).status == 200
    await check(client, settings, clock)
    stamp = int(NOW - 2) * 1000
    series = [({"__name__": "rpc_bucket", "le": le, "job": "api"}, [(v, stamp)])
              for le, v in (("0.5", 1.0), ("+Inf", 3.0))]
    series.append(({"__name__": "rpc_count", "job": "api"}, [(3.0, stamp)]))
    headers = {**AUTH, "Content-Encoding": "snappy", "Content-Type": "application/x-protobuf"}
    assert (await client.post("/api/v1/write", data=snappy(write_request(series)),
                              headers=headers)).status == 204
    await check(client, settings, clock)
    assert (await client.post("/api/v1/write", headers=headers, data=snappy(write_request(
        [], [(3, "rpc", "RPC latency.")])))).status == 204
    await check(client, settings, clock)
    assert "# TYPE rpc histogram" in await scraped(client, TEXT)

    # Another process deletes through the Worker's view: the next scrape shows it.
    outside = sqlite3.connect(settings.db_path)
    outside.execute("DELETE FROM metrics WHERE metric_name = 'm1' AND source = 'other'")
    outside.commit()
    outside.close()
    await check(client, settings, clock)

    # Time passes: the hpc series age out of the window, pinned ones stay.
    clock.pinned = NOW + settings.export_window - 6
    await check(client, settings, clock)
    clock.pinned = NOW + settings.export_window + 60
    await check(client, settings, clock)
    await push("hpc", clock.pinned, {"m1": 7.0}, {"host": "h3"})  # one comes back
    await check(client, settings, clock)
    assert (await client.delete(job, headers=AUTH)).status == 202
    await check(client, settings, clock)

    # The server's own purge, then one run beside it on another connection: a group's
    # members stay (`kept`, pushed long ago, is still its group's latest push), the rest go.
    assert "kept{" in await scraped(client, TEXT)
    await client.app[WRITER].request_purge(int(clock.pinned) - 30)
    await check(client, settings, clock)
    assert "kept{" in await scraped(client, TEXT)
    assert 'm2{source="hpc"' not in await scraped(client, TEXT)
    await push("late", clock.pinned, {"m1": 3.0})
    assert (await client.put("/metrics/job/keep2", data="kept_too 1\n",
                             headers=AUTH)).status == 200
    await check(client, settings, clock)
    await retention.purge_store(open_store(settings.database), 0, clock.pinned + 10)
    await push("after", clock.pinned, {"m9": 9.0})
    await check(client, settings, clock)
    assert "kept_too" in await scraped(client, TEXT)
    assert "late" not in await scraped(client, TEXT)
