"""Replicas on one PostgreSQL database behave as one service: what one acknowledges every
other reads at once, concurrent pushers over both store each sample exactly once, and the
service outlives a replica's SIGKILL and a restart of PostgreSQL itself."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
import yaml

from tests.conftest import AUTH, REPO, PostgresServer, Service
from tests.loadclient import PushLoad, expected, stored_pushes
from tests.prometheus_server import running_prometheus
from tests.test_cli import post

pytestmark = pytest.mark.slow
LOAD_SECONDS = 20


def replicas(service_factory: Callable[..., Service], url: str, count: int = 2
             ) -> list[Service]:
    return [service_factory(db=url) for _ in range(count)]


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url, headers=AUTH) as response:
        return response.status, await response.text()


def check_exactly_once(url: str, load: PushLoad) -> dict[int, list[tuple[str, float]]]:
    """Every acknowledged push stored, with its own values; nothing never attempted; and no
    sample twice (the samples key forbids it; counted here from the view all the same)."""
    stored = stored_pushes(url)
    missing = sorted(set(load.acked) - set(stored))
    assert not missing, f"{len(missing)} acknowledged pushes lost, e.g. {missing[:5]}"
    for index, samples in stored.items():
        assert index < load.attempted
        assert samples == expected(index), f"push {index} is half-stored or altered"
    with psycopg.connect(url) as conn:
        twice = conn.execute("SELECT count(*) FROM (SELECT 1 FROM metrics GROUP BY source,"
                             " labels, metric_name, timestamp HAVING count(*) > 1) d").fetchone()
        series = conn.execute("SELECT count(*) FROM series WHERE source = 'load'").fetchone()
    assert twice == (0,)
    assert series == (5,), "one id per series, whichever replica created it first"
    return stored


async def test_a_push_to_one_replica_is_read_on_the_other(
        service_factory: Callable[..., Service], postgres: PostgresServer) -> None:
    url = postgres.new_database()
    a, b = replicas(service_factory, url)
    stamp = int(time.time())
    async with aiohttp.ClientSession() as session:
        async with session.post(a.url + "/ingest", headers=AUTH, json={
                "source": "rack7", "timestamp": stamp, "metrics": {"node_load1": 3.5}}) as r:
            assert r.status == 200
        async with session.put(b.url + "/metrics/job/nightly", headers=AUTH,
                               data="# TYPE rows_total counter\nrows_total 12\n") as r:
            assert r.status == 200
        for replica in (a, b):  # the very next read, no waiting
            status, text = await get(session, replica.url + "/metrics")
            assert status == 200
            assert f'node_load1{{source="rack7"}} 3.5 {stamp}000' in text
            assert "# TYPE rows_total counter" in text
            assert 'rows_total{source="nightly",instance="",job="nightly"} 12' in text
            status, text = await get(session, replica.url + "/api/sources")
            assert '"rack7"' in text
            assert '"nightly"' in text
            status, text = await get(session, replica.url + "/api/metrics?source=rack7")
            assert '"node_load1"' in text
        async with session.delete(a.url + "/metrics/job/nightly", headers=AUTH) as r:
            assert r.status == 202
        status, text = await get(session, b.url + "/metrics")
        assert "rows_total{" not in text
        # The same new series pushed to both at once gets one id.
        pushes = [session.post(replica.url + "/ingest", headers=AUTH, json={
            "source": "race", "metrics": {f"m{i}": i for i in range(200)}})
            for replica in (a, b) for _ in range(4)]
        for response in await asyncio.gather(*pushes):
            assert response.status == 200
            response.release()
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT metric_name) FROM series"
                            " WHERE source = 'race'").fetchone() == (200, 200)


async def test_32_pushers_over_two_replicas_store_each_sample_once(
        service_factory: Callable[..., Service], postgres: PostgresServer) -> None:
    url = postgres.new_database()
    a, b = replicas(service_factory, url)
    load = PushLoad([a.url, b.url], workers=32)
    load.start()
    await asyncio.sleep(LOAD_SECONDS)  # the load's duration, not a synchronisation
    await load.stop()
    assert not load.refused
    assert not load.dropped
    assert min(load.acked_by.values()) > 100, load.acked_by
    stored = check_exactly_once(url, load)
    assert len(stored) == len(load.acked)
    print(f"two replicas, {LOAD_SECONDS} s: acked {len(load.acked)} ({load.acked_by})")


async def test_sigkill_of_one_replica_loses_nothing_and_the_other_serves_on(
        service_factory: Callable[..., Service], postgres: PostgresServer) -> None:
    url = postgres.new_database()
    a, b = replicas(service_factory, url)
    load = PushLoad([a.url, b.url], workers=32)
    load.start()
    await load.wait_for_acks(2000)
    a.process.send_signal(signal.SIGKILL)
    await asyncio.to_thread(a.process.wait, 10)
    before = load.acked_by[b.url]
    await load.wait_for_acks(len(load.acked) + 2000)  # B alone carries the load now
    await load.stop()
    assert load.acked_by[b.url] > before + 1000
    assert load.live == [b.url]
    stored = check_exactly_once(url, load)
    print(f"SIGKILL of one replica: acked {len(load.acked)}, stored {len(stored)}, "
          f"unknown outcome {len(load.dropped)}")


async def test_postgres_restart_under_load_recovers_without_restarting_replicas(
        service_factory: Callable[..., Service], postgres: PostgresServer) -> None:
    url = postgres.new_database()
    a, b = replicas(service_factory, url)
    load = PushLoad([a.url, b.url], workers=32)
    load.start()
    await load.wait_for_acks(2000)
    await asyncio.to_thread(postgres.cluster.stop, "fast")
    refused_before = len(load.refused)
    async with aiohttp.ClientSession() as session:
        async with session.post(a.url + "/ingest", headers=AUTH,
                                json={"source": "x", "metrics": {"m": 1}}) as response:
            assert response.status == 503
            assert response.headers["Retry-After"]
            assert "database" in (await response.json())["error"]
        deadline = time.monotonic() + 15
        while (await get(session, b.url + "/readyz"))[0] != 503:
            assert time.monotonic() < deadline, "readyz stayed 200 with the database down"
            await asyncio.sleep(0.1)
        await asyncio.to_thread(postgres.cluster.start)
        acked = len(load.acked)
        await load.wait_for_acks(acked + 2000, seconds=60)  # both replicas, no restart
        for replica in (a, b):
            deadline = time.monotonic() + 15
            while (await get(session, replica.url + "/readyz"))[0] != 200:
                assert time.monotonic() < deadline, "readyz did not recover"
                await asyncio.sleep(0.1)
    await load.stop()
    assert a.process.poll() is None
    assert b.process.poll() is None
    assert len(load.refused) > refused_before
    assert set(load.refused.values()) == {503}
    # (A refused push may be stored: its COMMIT can land as the connection drops. Never the
    # other way round.)
    stored = check_exactly_once(url, load)
    print(f"PostgreSQL restart: acked {len(load.acked)}, refused {len(load.refused)} (503), "
          f"stored {len(stored)}, unknown outcome {len(load.dropped)}")


def test_prometheus_scrapes_stored_series_once_and_every_replica(
        tmp_path: Path, service_factory: Callable[..., Service],
        postgres: PostgresServer) -> None:
    """The shipped scrape config (deploy/prometheus/prometheus.yml), its targets pointed at
    two real replicas: each pushed series once, each replica's own metrics from each."""
    url = postgres.new_database()
    a, b = replicas(service_factory, url)
    for replica, source in ((a, "rack1"), (b, "rack2")):
        status, _ = post(replica.url, {"source": source, "metrics": {"node_load1": 2.5}})
        assert status == 200
    config: dict[str, Any] = yaml.safe_load(
        (REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    stored, each = jobs["metrics-ingest-pg"], jobs["metrics-ingest-pg-replicas"]
    stored["static_configs"] = [{"targets": [a.url.removeprefix("http://")]}]
    del each["dns_sd_configs"]  # no DNS here: the two addresses the name would give
    each["static_configs"] = [{"targets": [r.url.removeprefix("http://") for r in (a, b)]}]
    config["scrape_configs"] = [stored, each]
    config["global"]["scrape_interval"] = "1s"
    with running_prometheus(tmp_path / "prometheus", yaml.safe_dump(config)) as prometheus:
        prometheus.wait_for('count(up{job="metrics-ingest-pg-replicas"} == 1) == 2', 90)
        prometheus.wait_for('count(node_load1) == 2', 90)
        by_source = prometheus.query("count by (source) (node_load1)")
        replicas_seen = prometheus.query('count by (instance) (metrics_ingest_requests_total'
                                         '{job="metrics-ingest-pg-replicas"})')
        self_in_stored = prometheus.query('{job="metrics-ingest-pg",'
                                          ' __name__=~"metrics_ingest_.*"}')
        stored_in_self = prometheus.query('node_load1{job="metrics-ingest-pg-replicas"}')
    assert {row["metric"]["source"]: row["value"][1] for row in by_source} == {
        "rack1": "1", "rack2": "1"}
    assert len(replicas_seen) == 2
    assert self_in_stored == []
    assert stored_in_self == []
