"""A restart of PostgreSQL (`pg_ctl -m fast restart`) under a running server is invisible to
its readers: the first read on every connection afterwards answers with the data stored
before, /metrics keeps rendering in the background, and SIGTERM still stops the server
cleanly (exit 0). Every test leaves the suite's cluster running for the next."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from aiohttp import web

from metrics_ingest import export as export_module
from metrics_ingest.app import create_app
from metrics_ingest.config import Settings
from metrics_ingest.formats.exposition import TEXT
from metrics_ingest.keys import EXPORT
from metrics_ingest.model import EVERYTHING
from tests.conftest import AUTH, TOKEN, PostgresServer, Service, poll, wait_until
from tests.pg_cluster import Cluster
from tests.test_cli import post

STAMP = int(time.time())
PUSHED = {"source": "rack7", "timestamp": STAMP, "metrics": {"node_load1": 3.5}}
PUSHED_LINE = f'node_load1{{source="rack7"}} 3.5 {STAMP}000'
SERIES_LINE = 'metrics_ingest_series{source="rack7"} 1'


@pytest.fixture
def cluster(postgres: PostgresServer) -> Iterator[Cluster]:
    """The suite's cluster, started again after the test if the test left it stopped."""
    yield postgres.cluster
    if postgres.cluster.pid is None:
        postgres.cluster.start()


def restart(cluster: Cluster) -> None:
    """`pg_ctl -m fast restart`: every connection to the cluster is ended."""
    try:
        cluster.stop("fast")
    finally:
        cluster.start()


def backends(url: str, purpose: str) -> int:
    """The server's connections of `purpose` to the database at `url`."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
                           " AND datname = current_database()",
                           (f"metrics-ingest {purpose}",)).fetchone()
    assert row is not None
    return int(row[0])


def settings_for(postgres: PostgresServer, tmp_path: Any) -> Settings:
    return Settings(db_path=tmp_path / "unused.db", auth_tokens=(TOKEN,),
                    db_url=postgres.new_database())


async def push(client: Any, body: dict[str, Any], seconds: float = 15.0) -> None:
    """Push as a client does: again on 503 (with its Retry-After) until a deadline."""
    deadline = time.monotonic() + seconds
    while True:
        response = await client.post("/ingest", json=body, headers=AUTH)
        if response.status != 503:
            assert response.status == 200, await response.text()
            return
        assert time.monotonic() < deadline, "pushes still refused after the restart"
        await asyncio.sleep(0.1)


async def text_of(client: Any, path: str) -> str:
    response = await client.get(path, headers=AUTH)
    text: str = await response.text()
    assert response.status == 200, f"{path}: {response.status} {text}"
    return text


# Each read a user makes, with what it must show: each is the first on its connection(s)
# after the restart (the test reads them all once before, so the connections exist).
FIRST_READS: dict[str, Callable[[str], bool]] = {
    "/api/metrics?limit=1": lambda text: '"metric_name":"node_load1"' in text
    and '"metric_value":3.5' in text,
    "/metrics": lambda text: PUSHED_LINE in text and SERIES_LINE in text,
    "/metrics?only=stored": lambda text: PUSHED_LINE in text,
    "/metrics?only=self": lambda text: SERIES_LINE in text,
    "/api/v1/series?match[]=node_load1": lambda text: '"source":"rack7"' in text,
    "/api/v1/query?query=node_load1": lambda text: '"3.5"' in text,
    "/": lambda text: "rack7" in text and "cannot be read" not in text,
}


@pytest.mark.parametrize("path", list(FIRST_READS))
async def test_the_first_read_after_a_restart_answers_with_the_data_stored_before(
        make_client: Any, postgres: PostgresServer, cluster: Cluster, tmp_path: Any,
        path: str) -> None:
    client = await make_client(settings_for(postgres, tmp_path))
    await push(client, PUSHED)
    for each, shows in FIRST_READS.items():  # every read connection opened and used
        assert shows(await text_of(client, each)), each
    await asyncio.to_thread(restart, cluster)
    assert FIRST_READS[path](await text_of(client, path))
    for each, shows in FIRST_READS.items():  # and every other read after it
        assert shows(await text_of(client, each)), each


async def test_while_the_database_is_down_reads_are_503_and_own_metrics_lack_the_series(
        make_client: Any, postgres: PostgresServer, cluster: Cluster, tmp_path: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    """Down, not restarted: the read again on a new connection fails too, and the user gets
    the 503 as before; a scrape of the service's own metrics still answers, without
    `metrics_ingest_series` (and says so in the log) rather than with a made-up count."""
    client = await make_client(settings_for(postgres, tmp_path))
    await push(client, PUSHED)
    for each, shows in FIRST_READS.items():
        assert shows(await text_of(client, each)), each
    try:
        await asyncio.to_thread(cluster.stop, "fast")
        response = await client.get("/api/metrics?limit=1", headers=AUTH)
        assert response.status == 503
        assert (await response.json())["error"].startswith("the database cannot be read: ")
        # A public read's anonymous caller is told to retry, not where the database lives.
        response = await client.get("/api/metrics?limit=1")
        assert response.status == 503
        assert response.headers["Retry-After"] == "5"
        assert (await response.json())["error"] == "the database cannot be read; retry shortly"
        text = await text_of(client, "/metrics?only=self")
        assert "metrics_ingest_series{" not in text
        assert "# TYPE metrics_ingest_queue_samples gauge\nmetrics_ingest_queue_samples 0\n" in text
        warnings = [record.getMessage() for record in caplog.records
                    if record.levelno == logging.WARNING and "metrics_ingest_series" in
                    record.getMessage()]
        assert len(warnings) == 1
        assert warnings[0].startswith("/metrics without metrics_ingest_series: PostgreSQL: ")
    finally:
        await asyncio.to_thread(cluster.start)
    assert SERIES_LINE in await text_of(client, "/metrics?only=self")
    assert FIRST_READS["/api/metrics?limit=1"](await text_of(client, "/api/metrics?limit=1"))


async def test_the_renderer_rides_out_the_database_down_and_renders_after_the_restart(
        make_client: Any, postgres: PostgresServer, cluster: Cluster, tmp_path: Any,
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export_module, "BACKGROUND_SECONDS", 0.05)
    caplog.set_level(logging.INFO, "metrics_ingest")
    client = await make_client(settings_for(postgres, tmp_path))
    export = client.app[EXPORT]
    renderer = next(task for task in asyncio.all_tasks()
                    if task.get_name() == "export-renderer")
    await push(client, PUSHED)
    assert PUSHED_LINE in await text_of(client, "/metrics")

    def renderer_lines(level: int) -> list[str]:
        return [record.getMessage() for record in caplog.records
                if record.name == "metrics_ingest.export" and record.levelno == level]

    try:
        await asyncio.to_thread(cluster.stop, "fast")
        # A change record while the database is down (a commit that landed as the
        # connection dropped, the change feed's "read everything" after a reconnect).
        export.apply(EVERYTHING)
        await poll(lambda: len(renderer_lines(logging.WARNING)) == 1)
        assert "/metrics renderer: PostgreSQL:" in renderer_lines(logging.WARNING)[0]
        assert not renderer.done()
    finally:
        await asyncio.to_thread(cluster.start)
    await poll(lambda: renderer_lines(logging.INFO) == [
        "/metrics renderer: the database can be read again"])
    assert len(renderer_lines(logging.WARNING)) == 1  # one warning for the whole outage
    after = {"source": "rack8", "timestamp": STAMP, "metrics": {"node_load1": 4.5}}
    await push(client, after)

    def rendered() -> bytes:
        return b"".join(part.text for parts in export.rendered[TEXT].ranges.values()
                        for part in parts.values())

    await poll(lambda: b'source="rack8"' in rendered())  # in the background, unasked
    assert not renderer.done()
    text = await text_of(client, "/metrics")
    assert PUSHED_LINE in text
    assert f'node_load1{{source="rack8"}} 4.5 {STAMP}000' in text


async def test_a_renderer_that_dies_of_a_bug_is_logged_at_once_and_fails_the_stop(
        postgres: PostgresServer, tmp_path: Any, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Only storage errors are ridden out: a bug is reported when it happens, and again by
    the stop (the server does not claim to have stopped cleanly)."""
    monkeypatch.setattr(export_module, "BACKGROUND_SECONDS", 0.0)
    app = create_app(settings_for(postgres, tmp_path))
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        export = app[EXPORT]

        def a_bug() -> None:
            raise RuntimeError("a bug in the renderer")

        monkeypatch.setattr(export.reader, "families", a_bug)
        export.apply(EVERYTHING)
        await poll(lambda: any("died" in record.getMessage() for record in caplog.records))
    finally:
        error = await stop(runner)
    died = next(record for record in caplog.records if "died" in record.getMessage())
    assert died.getMessage() == "export-renderer died; the server goes on without it"
    assert died.levelno == logging.ERROR
    assert died.exc_info is not None
    assert str(died.exc_info[1]) == "a bug in the renderer"
    assert isinstance(error, RuntimeError)
    assert str(error) == "a bug in the renderer"


async def stop(runner: web.AppRunner) -> BaseException | None:
    """Stop the app; what the stop raised, if anything."""
    try:
        await runner.cleanup()
    except Exception as exc:  # noqa: BLE001 - what the stop raises is the test's subject
        return exc
    return None


def get(url: str) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.slow
def test_sigterm_after_a_restart_exits_0_and_stops_cleanly(
        service_factory: Callable[..., Service], postgres: PostgresServer,
        cluster: Cluster) -> None:
    url = postgres.new_database()
    service = service_factory(db=url)
    assert post(service.url, PUSHED)[0] == 200
    status, text = get(service.url + "/metrics")
    assert (status, PUSHED_LINE in text) == (200, True)
    assert get(service.url + "/api/metrics?limit=1")[0] == 200
    restart(cluster)
    # The change feed hears of the restart and the background renderer reads everything
    # again, on a new connection, before anything is asked of the server.
    wait_until(lambda: backends(url, "export") == 1, 30, "the background renderer to read")
    status, text = get(service.url + "/api/metrics?limit=1")
    assert status == 200, text
    assert '"metric_value":3.5' in text
    status, text = get(service.url + "/metrics")
    assert status == 200, text
    assert PUSHED_LINE in text
    assert SERIES_LINE in text
    service.process.send_signal(signal.SIGTERM)
    assert service.process.wait(20) == 0, service.log()
    log = service.log()
    assert "stopped cleanly" in log
    assert "metrics-ingest: error" not in log
    assert "Traceback" not in log
