"""Fixtures: real settings over a real store — an SQLite file in tmp_path, or a database of
its own in a throwaway PostgreSQL cluster the suite starts — and the real app on a port."""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from metrics_ingest.app import create_app, server_options
from metrics_ingest.config import Settings
from metrics_ingest.model import Push, SampleGroup
from metrics_ingest.store.postgres import migrations as pg_migrations
from metrics_ingest.store.sqlite.session import SQLiteWriteSession
from tests import pg_cluster

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
REPO = Path(__file__).resolve().parent.parent


@dataclass
class Clock:
    """A settable clock for the app: `now` is real time unless a test pins it."""

    pinned: float | None = None

    def __call__(self) -> float:
        return time.time() if self.pinned is None else self.pinned



def push_of(groups: list[SampleGroup], received_at: float | None = None) -> Push:
    """A validated push of `groups`, as the intake hands it to a write session (its future
    on the running loop, or on a throwaway one outside a test's loop)."""
    try:
        done = asyncio.get_running_loop().create_future()
    except RuntimeError:
        loop = asyncio.new_event_loop()
        done = loop.create_future()
        loop.close()
    return Push(groups, sum(len(g.names) for g in groups),
                time.time() if received_at is None else received_at, done)

@pytest.fixture
def clock() -> Clock:
    return Clock()


@dataclass
class PostgresServer:
    """The suite's PostgreSQL cluster and a migrated template database to copy per test."""

    cluster: pg_cluster.Cluster
    made: int = 0

    def new_database(self) -> str:
        """A URL to a fresh, migrated database of its own."""
        self.made += 1
        name = f"test_{os.getpid()}_{self.made}"
        with psycopg.connect(self.cluster.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE metrics_template")
        return self.cluster.url(name)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL 15 cluster from Debian's `postgresql` package: missing fails in CI
    (.ci/run installs it), skips elsewhere."""
    cluster = pg_cluster.start_cluster({"fsync": "off", "full_page_writes": "off"},
                                     in_memory=True)
    if cluster is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is required in CI (Debian package postgresql)")
        pytest.skip("PostgreSQL not installed (Debian package postgresql)")
    try:
        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE metrics_template")
        with psycopg.connect(cluster.url("metrics_template"), autocommit=True) as conn:
            pg_migrations.migrate(conn)
        yield PostgresServer(cluster)
    finally:
        cluster.destroy()


ENGINES = ["sqlite", "postgres"]


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """Each test that uses `settings` runs once per engine."""
    return str(request.param)


@pytest.fixture
def settings(tmp_path: Path, engine: str, request: pytest.FixtureRequest) -> Settings:
    plain = Settings(db_path=tmp_path / "metrics.db", auth_tokens=(TOKEN,))
    if engine == "sqlite":
        return plain
    server: PostgresServer = request.getfixturevalue("postgres")
    return plain.replace(db_url=server.new_database())


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    """For what only the SQLite engine has (its file, its PRAGMAs)."""
    return Settings(db_path=tmp_path / "metrics.db", auth_tokens=(TOKEN,))


ClientFactory = Callable[..., Any]


@pytest.fixture
async def make_client(
    aiohttp_client: Any, clock: Clock
) -> Callable[[Settings], Any]:
    """Start the full app (migrations, writer, cron) for given settings; stopped after the test."""

    async def start(settings: Settings) -> TestClient[web.Request, web.Application]:
        # TestServer ignores constructor kwargs; started here, it keeps the production options
        # (auto_decompress off above all) and aiohttp_client reuses the running server.
        app = create_app(settings, clock)
        server = TestServer(app)
        await server.start_server(**server_options(app))
        client: TestClient[web.Request, web.Application] = await aiohttp_client(server)
        return client

    return start


@pytest.fixture
async def client(
    make_client: Callable[[Settings], Any], settings: Settings
) -> TestClient[web.Request, web.Application]:
    started: TestClient[web.Request, web.Application] = await make_client(settings)
    return started


async def poll(predicate: Callable[[], bool], seconds: float = 10.0) -> None:
    """Wait for a condition with a deadline, yielding to the loop between looks."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not predicate():
        assert loop.time() < deadline, "condition not reached before the deadline"
        await asyncio.sleep(0.005)


async def run_tool(*command: str, stdin: str) -> tuple[int, str]:
    """Run an external checker without blocking the loop; returns (exit code, stdout+stderr)."""
    process = await asyncio.create_subprocess_exec(
        *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(process.communicate(stdin.encode()), 60)
    assert process.returncode is not None
    return process.returncode, output.decode()


def rows(where: Settings | Path, sql: str,
         params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read the store as a user would, on a separate connection: `where` is the settings
    (either engine; `?` placeholders) or an SQLite file's path."""
    if isinstance(where, Settings) and where.db_url is not None:
        with psycopg.connect(where.db_url) as conn:
            return [tuple(row) for row in conn.execute(sql.replace("?", "%s"),  # type: ignore[call-overload]
                                                       params).fetchall()]
    conn = sqlite3.connect(where.db_path if isinstance(where, Settings) else where)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def refuse_writes(session: Any) -> str:
    """Make the writer's store refuse writes from now on (on the writer thread: pass to
    Writer.call); returns the word the engine's error uses."""
    if isinstance(session, SQLiteWriteSession):
        session.db.execute("PRAGMA query_only = ON")
        return "readonly"
    for conn in session.conns:
        conn.execute("SET default_transaction_read_only = on")
    return "read-only"


def accept_writes(session: Any) -> None:
    if isinstance(session, SQLiteWriteSession):
        session.db.execute("PRAGMA query_only = OFF")
    else:
        for conn in session.conns:
            conn.execute("SET default_transaction_read_only = off")


@contextmanager
def writes_held(settings: Settings) -> Iterator[None]:
    """Another connection holds what the writer needs, so it stalls inside its batch."""
    if settings.db_url is not None:
        with psycopg.connect(settings.db_url) as blocker:
            blocker.execute("LOCK TABLE latest IN EXCLUSIVE MODE")
            yield
            blocker.rollback()
        return
    blocker = sqlite3.connect(settings.db_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def required_tool(name: str, package: str) -> str:
    """A Debian-packaged peer's path: missing fails in CI (.ci/run installs it), skips
    elsewhere."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is required in CI (Debian package {package})")
        pytest.skip(f"{name} not installed (Debian package {package})")
    return path


def promtool() -> str:
    return required_tool("promtool", "prometheus")


@dataclass
class Service:
    """The real `metrics-ingest serve` as a subprocess."""

    process: subprocess.Popen[str]
    url: str
    db_path: Path
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text()


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll with a deadline (never a bare sleep to synchronise)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def start_service(tmp_path: Path, env: dict[str, str] | None = None,
                  args: tuple[str, ...] = (), port: int | None = None,
                  clean_env: dict[str, str] | None = None, cwd: Path | None = None,
                  limit_files: int | None = None, db: str | None = None) -> Service:
    """`metrics-ingest serve` on a free port over tmp_path/data/metrics.db (or `db`, a
    PostgreSQL URL), with the test token; `clean_env` replaces the environment (and the
    token) entirely; `limit_files` is the server's `ulimit -n` (soft and hard)."""
    db_path = tmp_path / "data" / "metrics.db"
    port = port or free_port()
    log_path = tmp_path / f"serve-{port}.log"
    temporary = tmp_path / "tmp"  # (TMPDIR: what the server leaves there is the test's)
    temporary.mkdir(exist_ok=True)
    if clean_env is not None:
        full_env = {"TMPDIR": str(temporary), **clean_env, **(env or {})}
        full_env = {key: value for key, value in full_env.items() if value}
    else:
        full_env = {**os.environ, "METRICS_AUTH_TOKEN": TOKEN, "TMPDIR": str(temporary),
                    **(env or {})}
    with log_path.open("w") as log:
        def limits() -> None:
            if limit_files is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (limit_files, limit_files))

        process = subprocess.Popen(
            [sys.executable, "-m", "metrics_ingest", "serve", "--port", str(port),
             "--db", db or str(db_path), *args],
            cwd=cwd or tmp_path, env=full_env, stdout=log, stderr=subprocess.STDOUT, text=True,
            preexec_fn=limits if limit_files is not None else None)
    service = Service(process, f"http://127.0.0.1:{port}", db_path, log_path)

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"serve exited early:\n{service.log()}")
        return "listening on" in service.log()

    wait_until(ready, 30, "the server to listen")
    return service


@pytest.fixture
def service_factory(tmp_path: Path) -> Iterator[Callable[..., Service]]:
    started: list[Service] = []

    def factory(env: dict[str, str] | None = None, args: tuple[str, ...] = (),
                port: int | None = None, limit_files: int | None = None,
                db: str | None = None) -> Service:
        service = start_service(tmp_path, env, args, port, limit_files=limit_files, db=db)
        started.append(service)
        return service

    yield factory
    for service in started:
        if service.process.poll() is None:
            service.process.kill()
            service.process.wait(10)
