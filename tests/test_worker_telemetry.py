"""`serve --workers 2`: whichever worker answers, `/metrics` shows the service's own metrics
as one service's (every worker's counts summed) and so does the status page, so Prometheus
never reads a counter falling back as scrapes land on another worker; a worker started
again in a killed one's place counts on from it."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from metrics_ingest.counts_directory import PREFIX, CountsDirectory, sweep
from metrics_ingest.telemetry import Telemetry
from metrics_ingest.worker_telemetry import ServiceTelemetry
from tests.conftest import Service, wait_until
from tests.prometheus_server import running_prometheus
from tests.test_status_page import ROW_RE
from tests.test_workers import fresh_connection, started, worker_pids

PUSHES = 40  # each on a connection of its own: the kernel spreads them over both workers
DEADLINE = 10.0


Metrics = dict[tuple[str, tuple[tuple[str, str], ...]], float]  # (name, labels) -> value
SCRAPES = ("metrics_ingest_requests_total", (("code", "200"), ("route", "metrics")))


async def own_metrics(service: Service) -> Metrics:
    """One scrape of `?only=self` on a fresh connection: (name, labels) -> value, each
    sample once (the parser, as Prometheus, would see a repeated one)."""
    status, text = await fresh_connection("GET", service.url + "/metrics?only=self")
    assert status == 200
    found: Metrics = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in found, f"{key} exposed twice"
            found[key] = sample.value
    return found


def ingested(metrics: Metrics) -> float:
    return metrics.get(("metrics_ingest_requests_total",
                        (("code", "200"), ("route", "ingest"))), 0.0)


def received(metrics: Metrics) -> float:
    return sum(value for (name, _), value in metrics.items()
               if name == "metrics_ingest_samples_received_total")


async def scraped_until(service: Service, pushes: int) -> Metrics:
    """Scrape until the service shows `pushes` pushes (the other worker's counts are at most
    a second old), or fail at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while True:
        metrics = await own_metrics(service)
        if ingested(metrics) == pushes:
            return metrics
        assert ingested(metrics) < pushes, metrics
        assert loop.time() < deadline, f"the service shows {ingested(metrics)} of {pushes}"
        await asyncio.sleep(0.1)  # (polling: the next scrape, not a synchronisation)


def worker_counts(tmp_path: Path, route: str) -> dict[int, int]:
    """worker -> its own count of 200s on `route`, from the snapshots it wrote (to check
    that both workers did take part)."""
    counts = {}
    for path in (tmp_path / "tmp").glob("metrics-ingest-workers-*/worker-*.json"):
        snapshot = json.loads(path.read_text())
        counts[int(path.stem.removeprefix("worker-"))] = sum(
            n for name, code, n in snapshot["requests"] if (name, code) == (route, "200"))
    return counts


def answered_pushes(tmp_path: Path) -> dict[int, int]:
    return worker_counts(tmp_path, "ingest")


def answered_scrapes(tmp_path: Path) -> list[int]:
    return sorted(worker for worker, n in worker_counts(tmp_path, "metrics").items() if n)


async def push_each_on_its_own_connection(service: Service, count: int, first: int = 0) -> None:
    for i in range(first, first + count):
        status, _ = await fresh_connection(
            "POST", service.url + "/ingest",
            json={"source": f"node{i}", "metrics": {"load": i, "jobs": 2 * i}})
        assert status == 200


@pytest.mark.slow
async def test_every_scrape_shows_both_workers_counts_and_none_falls_back(
        service_factory: Callable[..., Service], tmp_path: Path) -> None:
    service = started(service_factory)
    await push_each_on_its_own_connection(service, PUSHES)
    metrics = await scraped_until(service, PUSHES)
    assert received(metrics) == 2 * PUSHES
    assert metrics[("metrics_ingest_batch_samples_sum", ())] == 2 * PUSHES
    assert metrics[("metrics_ingest_queue_samples", ())] == 0
    last_scrapes = metrics.get(SCRAPES, 0.0)
    for _ in range(12):  # on fresh connections: answered by either worker
        again = await own_metrics(service)
        assert ingested(again) == PUSHES
        assert received(again) == 2 * PUSHES
        scrapes = again.get(SCRAPES, 0.0)
        assert scrapes >= last_scrapes, "a counter fell back between two scrapes"
        last_scrapes = scrapes
        pushed = {dict(labels)["source"] for (name, labels) in again
                  if name == "metrics_ingest_last_push_timestamp_seconds"}
        assert pushed == {f"node{i}" for i in range(PUSHES)}
    assert "metrics_ingest.workers" not in service.log()  # (no snapshot went unread)
    assert all(answered_pushes(tmp_path).values()), "one worker took every push"


@pytest.mark.slow
async def test_the_status_page_shows_every_worker_s_pushes(
        service_factory: Callable[..., Service]) -> None:
    service = started(service_factory)
    await push_each_on_its_own_connection(service, PUSHES)
    await scraped_until(service, PUSHES)
    for _ in range(4):
        status, page = await fresh_connection("GET", service.url + "/")
        assert status == 200
        rows = {name: html for _, name, html in ROW_RE.findall(page)}
        assert set(rows) == {f"node{i}" for i in range(PUSHES)}
        for name, html in rows.items():
            assert '<td data-label="Formats">JSON</td>' in html, name
            assert re.search(r'data-label="Samples, since start" class="num">2<', html), name


@pytest.mark.slow
async def test_a_worker_started_again_counts_on_from_the_killed_one(
        service_factory: Callable[..., Service]) -> None:
    service = started(service_factory)
    await push_each_on_its_own_connection(service, PUSHES)
    await scraped_until(service, PUSHES)
    first, _ = worker_pids(service)
    os.kill(first, signal.SIGKILL)
    await asyncio.to_thread(wait_until, lambda: len(worker_pids(service)) == 2
                            and first not in worker_pids(service), 30,
                            "the supervisor to start the killed worker again")
    await asyncio.to_thread(wait_until, lambda: service.log().count("listening on") >= 3, 30,
                            "the new worker to listen")
    for _ in range(8):
        metrics = await own_metrics(service)
        assert ingested(metrics) == PUSHES, "the killed worker's counts were lost"
        assert received(metrics) == 2 * PUSHES
    await push_each_on_its_own_connection(service, 10, first=PUSHES)
    await scraped_until(service, PUSHES + 10)


@pytest.mark.slow
def test_the_supervisor_leaves_nothing_in_tmpdir(
        service_factory: Callable[..., Service]) -> None:
    # A TMPDIR as short as /tmp's: a worker's own temporary files (its forkserver's) then
    # fit in the supervisor's directory (under a long one they stay in TMPDIR itself).
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="mi-") as short:
        service = started(service_factory, env={"TMPDIR": short})
        assert len(list(Path(short).glob("metrics-ingest-workers-*"))) == 1
        first, _ = worker_pids(service)
        os.kill(first, signal.SIGKILL)  # (what it leaves is the supervisor's to remove)
        wait_until(lambda: service.log().count("listening on") >= 3, 30, "the worker again")
        os.kill(service.process.pid, signal.SIGTERM)
        assert service.process.wait(30) == 0
        assert not list(Path(short).iterdir()), "left in TMPDIR"


@pytest.mark.slow
def test_a_killed_supervisor_s_counts_are_swept_by_the_next(
        service_factory: Callable[..., Service], tmp_path: Path) -> None:
    killed = started(service_factory)
    workers = worker_pids(killed)
    killed.process.kill()
    killed.process.wait(10)
    wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers), 30,
               "the workers to stop with their supervisor")
    [left] = (tmp_path / "tmp").glob("metrics-ingest-workers-*")
    assert left.name.startswith(f"metrics-ingest-workers-{killed.process.pid}-")
    started(service_factory)
    [now] = (tmp_path / "tmp").glob("metrics-ingest-workers-*")
    assert now != left


# Scrapes 2 s apart, the server closing connections idle 1 s: each scrape on a connection
# of its own, so Prometheus's scrapes land on either worker.
PROMETHEUS_CONFIG = """
global:
  scrape_interval: 2s
  scrape_timeout: 1s
scrape_configs:
  - job_name: metrics-ingest-self
    params: {only: [self]}
    static_configs: [{targets: ["127.0.0.1:INGEST_PORT"]}]
"""


@pytest.mark.slow
async def test_prometheus_reads_the_whole_service_on_the_one_port(
        service_factory: Callable[..., Service], tmp_path: Path) -> None:
    service = started(service_factory, env={"METRICS_KEEPALIVE_TIMEOUT": "1"})
    await push_each_on_its_own_connection(service, PUSHES)
    config = PROMETHEUS_CONFIG.replace("INGEST_PORT", service.url.rsplit(":", 1)[1])
    with running_prometheus(tmp_path / "prometheus", config) as prometheus:
        pushes = 'metrics_ingest_requests_total{route="ingest",code="200"} == '
        await asyncio.to_thread(prometheus.wait_for, pushes + str(PUSHES), 30)
        await asyncio.to_thread(wait_until, lambda: answered_scrapes(tmp_path) == [1, 2], 60,
                                "scrapes answered by both workers")
        await push_each_on_its_own_connection(service, 10, first=PUSHES)
        await asyncio.to_thread(prometheus.wait_for, pushes + str(PUSHES + 10), 30)
        [resets] = await asyncio.to_thread(
            prometheus.query, "resets(metrics_ingest_requests_total"
            '{route="ingest",code="200"}[5m])')
        assert resets["value"][1] == "0"

# -- snapshots and their sums, without a server ------------------------------------------

JSON, INFLUX = object(), object()
NAMES = {JSON: "JSON", INFLUX: "Influx v1"}


def counted(source: str, pushed_at: float, fmt: object = JSON) -> Telemetry:
    telemetry = Telemetry()
    telemetry.count_request("ingest", 200)
    telemetry.count_committed({source: 2})
    telemetry.count_rejected("invalid", source)
    telemetry.token_requests["ci"] += 1
    telemetry.skipped_samples[("not_a_number", source)] += 1
    telemetry.last_push[source] = pushed_at
    telemetry.pushed_with[fmt][source] = pushed_at
    telemetry.batch_samples.observe(2)
    telemetry.flush_duration.observe(0.003)
    telemetry.purged_samples = 5
    telemetry.last_purge = pushed_at - 100
    return telemetry


def shared(tmp_path: Path, index: int, telemetry: Telemetry, queued: int = 0
           ) -> ServiceTelemetry:
    return ServiceTelemetry(telemetry, lambda: queued, NAMES, tmp_path, index)


def test_the_service_shows_every_worker_s_counts_summed(tmp_path: Path) -> None:
    one = shared(tmp_path, 1, counted("hpc", 1000.0), queued=3)
    two = shared(tmp_path, 2, counted("hpc", 1500.0, INFLUX), queued=4)
    two.publish()
    whole, queued = one.read()
    assert queued == 7
    assert whole.requests == {("ingest", "200"): 2}
    assert whole.samples_received == {"hpc": 4}
    assert whole.rejected_pushes == {(("reason", "invalid"), ("source", "hpc")): 2}
    assert whole.token_requests == {"ci": 2}
    assert whole.skipped_samples == {("not_a_number", "hpc"): 2}
    assert whole.last_push == {"hpc": 1500.0}  # the newest, not a sum
    assert whole.pushed_with == {JSON: {"hpc": 1000.0}, INFLUX: {"hpc": 1500.0}}
    assert whole.batch_samples.cumulative() == [("1.0", 0), ("10.0", 2), ("100.0", 2),
                                                ("1000.0", 2), ("10000.0", 2),
                                                ("100000.0", 2), ("+Inf", 2)]
    assert whole.flush_duration.count == 2
    assert whole.flush_duration.total == pytest.approx(0.006)
    assert (whole.purged_samples, whole.last_purge) == (10, 1400.0)


def test_a_worker_s_own_counts_are_written_before_it_shows_them(tmp_path: Path) -> None:
    mine = counted("hpc", 1000.0)
    one, two = shared(tmp_path, 1, mine), shared(tmp_path, 2, Telemetry())
    assert two.read()[0].requests == {}  # worker 1 has written nothing yet
    assert one.read()[0].requests == {("ingest", "200"): 1}
    mine.count_request("ingest", 200)
    assert two.read()[0].requests == {("ingest", "200"): 1}  # as worker 1 last showed it
    assert one.read()[0].requests == {("ingest", "200"): 2}
    assert two.read()[0].requests == {("ingest", "200"): 2}


def test_a_worker_in_a_dead_one_s_place_counts_on(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    shared(tmp_path, 1, counted("hpc", 1000.0)).publish()
    again = Telemetry()
    successor = shared(tmp_path, 1, again)
    successor.take_over()
    shared(tmp_path, 3, Telemetry()).take_over()  # (the first of its index: nothing there)
    assert not caplog.text
    again.count_request("ingest", 200)
    assert successor.read()[0].requests == {("ingest", "200"): 2}
    assert again.pushed_with == {JSON: {"hpc": 1000.0}}
    alone = ServiceTelemetry(Telemetry(), lambda: 9, NAMES)
    alone.take_over()  # (one process: nothing to take over, nothing written)
    assert alone.read() == (alone.telemetry, 9)
    assert not list(tmp_path.glob("*.partial"))


def test_an_unreadable_snapshot_counts_as_its_last_readable_one(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    one = shared(tmp_path, 1, counted("hpc", 1000.0))
    two = shared(tmp_path, 2, counted("hpc", 1000.0))
    two.publish()
    assert one.read()[0].requests == {("ingest", "200"): 2}
    (tmp_path / "worker-2.json").write_text("{not json")
    for _ in range(2):  # the sum does not fall; said once
        assert one.read()[0].requests == {("ingest", "200"): 2}
    assert caplog.text.count("cannot read") == 1
    assert "worker-2.json" in caplog.text
    (tmp_path / "worker-3.json").write_text("[]")  # never readable: left out
    assert one.read()[0].requests == {("ingest", "200"): 2}
    assert caplog.text.count("cannot read") == 2
    two.telemetry.count_request("ingest", 200)
    two.publish()
    assert one.read()[0].requests == {("ingest", "200"): 3}


def test_a_lost_directory_is_said_once(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                       ) -> None:
    caplog.set_level(logging.INFO)
    share = shared(tmp_path / "gone" / "deeper", 1, counted("hpc", 1000.0))
    for _ in range(3):
        share.publish()
    assert caplog.text.count("cannot write") == 1
    (tmp_path / "gone").mkdir()
    share.publish()  # (its own directory it makes again, not the one above)
    assert "working again after 3 failures" in caplog.text
    assert share.read()[0].requests == {("ingest", "200"): 1}


def test_a_directory_removed_from_outside_is_made_again(tmp_path: Path) -> None:
    directory = tmp_path / "counts"
    directory.mkdir()
    one = shared(directory, 1, counted("hpc", 1000.0))
    two = shared(directory, 2, counted("hpc", 1000.0))
    two.publish()
    assert one.read()[0].requests == {("ingest", "200"): 2}
    shutil.rmtree(directory)
    assert one.read()[0].requests == {("ingest", "200"): 2}  # worker 2's last figures stand
    assert (directory / "worker-1.json").exists()


# -- the counts directory ------------------------------------------------------------------


@pytest.fixture
def temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """TMPDIR for the supervisor's directory: this test's."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def test_a_directory_whose_supervisor_is_gone_is_swept(temporary: Path) -> None:
    live = CountsDirectory.make()
    assert live is not None
    gone = CountsDirectory.make()
    assert gone is not None
    os.close(gone.lock)  # (as its process's death would: the lock is free)
    being_made = temporary / f"{PREFIX}1-new"
    being_made.mkdir()
    forsaken = temporary / f"{PREFIX}2-old"
    forsaken.mkdir()
    os.utime(forsaken, (0, 0))  # no lock file, made long ago
    (temporary / "elsewhere").mkdir()
    (temporary / f"{PREFIX}link").symlink_to(temporary / "elsewhere")
    (temporary / f"{PREFIX}file").write_text("")
    sweep()
    assert live.path.exists()
    assert being_made.exists()
    assert not gone.path.exists()
    assert not forsaken.exists()
    assert (temporary / f"{PREFIX}link").is_symlink()
    assert (temporary / "elsewhere").exists()
    live.remove()
    assert not live.path.exists()


def test_a_tmpdir_that_takes_no_directory_is_said(
        temporary: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    (temporary / "a-file").write_text("")
    monkeypatch.setattr(tempfile, "tempdir", str(temporary / "a-file"))
    assert CountsDirectory.make() is None
    assert "cannot make a directory for the workers' counts" in caplog.text
    assert "each worker's /metrics shows its own counts only" in caplog.text


def test_no_usable_temporary_directory_is_said(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def none_usable() -> str:
        raise FileNotFoundError("No usable temporary directory found in ['/tmp']")

    monkeypatch.setattr(tempfile, "gettempdir", none_usable)
    monkeypatch.setenv("TMPDIR", "/nonexistent")
    assert CountsDirectory.make() is None
    assert "in /nonexistent: No usable temporary directory found" in caplog.text
