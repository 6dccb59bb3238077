"""`serve --workers 2`: two server processes on one port and one database behave as one
server: every push is read back whichever process answers, concurrent pushers store each
sample exactly once, a SIGKILLed worker loses nothing acknowledged (and is started again),
and a database locked from outside gets 503, never a 500 or a hang."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import AUTH, PostgresServer, Service, free_port, wait_until
from tests.loadclient import PushLoad, expected, stored_pushes

pytestmark = pytest.mark.slow
LOAD_SECONDS = 20


def worker_pids(service: Service) -> list[int]:
    """The supervisor's worker processes (multiprocessing's spawned children)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == service.process.pid and b"spawn_main" in cmdline:
            pids.append(int(entry.name))
    return sorted(pids)


def started(service_factory: Callable[..., Service], db: str | None = None,
            env: dict[str, str] | None = None) -> Service:
    service = service_factory(args=("--workers", "2"), db=db, env=env)
    wait_until(lambda: service.log().count("listening on") >= 2, 30, "both workers")
    return service


async def fresh_connection(method: str, url: str, **kwargs: object) -> tuple[int, str]:
    """One request on a connection of its own: the kernel picks the worker for each."""
    async with aiohttp.ClientSession() as session, session.request(
            method, url, headers=AUTH, **kwargs) as response:  # type: ignore[arg-type]
        return response.status, await response.text()


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
async def test_every_push_is_read_back_whichever_worker_answers(
        service_factory: Callable[..., Service], request: pytest.FixtureRequest,
        engine: str) -> None:
    db = None
    if engine == "postgres":
        postgres: PostgresServer = request.getfixturevalue("postgres")
        db = postgres.new_database()
    service = started(service_factory, db)
    stamp = int(time.time())
    for i in range(30):
        status, _ = await fresh_connection(
            "POST", service.url + "/ingest",
            json={"source": f"node{i}", "timestamp": stamp, "metrics": {"load": i}})
        assert status == 200
        status, text = await fresh_connection("GET", service.url + "/metrics")
        assert status == 200
        assert f'load{{source="node{i}"}} {i} {stamp}000' in text, f"push {i} not read back"
        status, text = await fresh_connection("GET", service.url + "/api/sources")
        assert f'"node{i}"' in text
    assert len(worker_pids(service)) == 2


async def test_32_pushers_over_two_workers_store_each_sample_once(
        service_factory: Callable[..., Service]) -> None:
    service = started(service_factory)
    load = PushLoad(service.url, workers=32)
    load.start()
    await asyncio.sleep(LOAD_SECONDS)  # the load's duration, not a synchronisation
    await load.stop()
    assert not load.refused
    assert not load.dropped
    stored = stored_pushes(service.db_path)
    assert set(stored) == load.acked
    for index, samples in stored.items():
        assert samples == expected(index)
    conn = sqlite3.connect(service.db_path)
    try:
        assert conn.execute("SELECT count(*) FROM series WHERE source = 'load'"
                            ).fetchone() == (5,)
    finally:
        conn.close()
    print(f"--workers 2, {LOAD_SECONDS} s: acked {len(load.acked)}")


async def test_a_sigkilled_worker_loses_nothing_and_is_started_again(
        service_factory: Callable[..., Service]) -> None:
    service = started(service_factory)
    first, second = worker_pids(service)
    load = PushLoad(service.url, workers=32)
    load.start()
    await load.wait_for_acks(2000)
    os.kill(first, signal.SIGKILL)
    acked = len(load.acked)
    await load.wait_for_acks(acked + 2000)  # the other worker serves on meanwhile
    await asyncio.to_thread(wait_until, lambda: len(worker_pids(service)) == 2, 30,
                            "the supervisor to start the killed worker again")
    assert second in worker_pids(service)
    await load.stop()
    stored = stored_pushes(service.db_path)
    missing = sorted(load.acked - set(stored))
    assert not missing, f"{len(missing)} acknowledged pushes lost, e.g. {missing[:5]}"
    for index, samples in stored.items():
        assert samples == expected(index)
    assert "worker 1 exited" in service.log() or "worker 2 exited" in service.log()
    print(f"SIGKILL of a worker: acked {len(load.acked)}, stored {len(stored)}, "
          f"unknown outcome {len(load.dropped)}")


@pytest.mark.parametrize("moment", ["waiting to start it again", "as it starts again"])
def test_a_stop_while_a_worker_is_being_replaced_exits_0(
        service_factory: Callable[..., Service], moment: str) -> None:
    """`systemctl stop` while a dead worker waits out its restart delay, or while its
    replacement is still starting, is an ordinary stop: exit 0 (it was 1, failing the unit),
    and the exit said with its signal, not 'code None'."""
    service = started(service_factory)
    first, second = worker_pids(service)
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: "starting it again" in service.log(), 10, "the exit noticed")
    if moment == "as it starts again":
        wait_until(lambda: len(set(worker_pids(service)) - {first, second}) == 1, 10,
                   "the replacement process")
    service.process.send_signal(signal.SIGTERM)
    assert service.process.wait(40) == 0, service.log()
    assert "exited (code -9); starting it again" in service.log()
    assert "code None" not in service.log()


async def test_a_worker_that_cannot_start_while_postgres_is_down_does_not_stop_the_other(
        service_factory: Callable[..., Service], postgres: PostgresServer) -> None:
    service = started(service_factory, db=postgres.new_database())
    first, second = worker_pids(service)
    await asyncio.to_thread(postgres.cluster.stop, "fast")
    try:
        os.kill(first, signal.SIGKILL)
        # Its restarts fail at once (no database): three in a row, each waited out longer.
        await asyncio.to_thread(wait_until, lambda: service.log().count("stopped: PostgreSQL")
                                >= 3, 30, "three failed restarts of the killed worker")
        assert service.process.poll() is None, "the supervisor gave up with a worker serving"
        assert second in worker_pids(service)
        status, body = await fresh_connection("POST", service.url + "/ingest",
                                              json={"source": "s", "metrics": {"m": 1}})
        assert status == 503, body  # the surviving worker answers, the database is down
        assert "starting it again in 4 s" in service.log()
        assert "Traceback" not in service.log()
        await asyncio.to_thread(wait_until, lambda: "starting it again in 8 s" in service.log(),
                                30, "a fourth failed restart")
    finally:
        await asyncio.to_thread(postgres.cluster.start)
    # The other worker dies while the first waits out its 8 s: it is started again at once,
    # on its own schedule, not after the first's wait.
    os.kill(second, signal.SIGKILL)
    killed = time.monotonic()
    await asyncio.to_thread(wait_until, lambda: "worker 2 exited" in service.log()
                            or "worker 1 exited (code -9)" in service.log(), 30,
                            "the second kill to be seen")
    assert time.monotonic() - killed < 4, "a dead worker waited for the other's restart"
    await asyncio.to_thread(wait_until, lambda: service.log().count("listening on") >= 4, 60,
                            "both workers to start once the database is back")
    status, _ = await fresh_connection("POST", service.url + "/ingest",
                                       json={"source": "s", "metrics": {"m": 1}})
    assert status == 200
    service.process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(service.process.wait, 30) == 0


async def test_a_database_locked_from_outside_gets_503_not_500_or_a_hang(
        service_factory: Callable[..., Service]) -> None:
    service = started(service_factory)
    status, _ = await fresh_connection("POST", service.url + "/ingest",
                                       json={"source": "a", "metrics": {"m": 1}})
    assert status == 200
    blocker = sqlite3.connect(service.db_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        started_at = time.monotonic()
        status, text = await fresh_connection("POST", service.url + "/ingest",
                                              json={"source": "a", "metrics": {"m": 2}})
        waited = time.monotonic() - started_at
        assert status == 503, text
        assert "locked" in text
        assert waited < 10  # SQLite's busy timeout (5 s), then the answer
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    deadline = time.monotonic() + 20
    while (await fresh_connection("POST", service.url + "/ingest",
                                  json={"source": "a", "metrics": {"m": 3}}))[0] != 200:
        assert time.monotonic() < deadline, "pushes did not recover after the lock"
        await asyncio.sleep(0.2)
    await asyncio.to_thread(service.process.send_signal, signal.SIGTERM)
    assert await asyncio.to_thread(service.process.wait, 40) == 0


async def test_a_worker_kept_from_its_turn_to_commit_answers_503_and_goes_on_serving(
        service_factory: Callable[..., Service]) -> None:
    """The turn to commit (`<db>.commit`) held past its 5 s wait, as by a worker stuck on a
    lock: the pushes waiting get 503 naming it, and every worker then serves again (the
    writer that timed out used to die, leaving its worker answering 503 until restarted)."""
    service = started(service_factory)
    status, _ = await fresh_connection("POST", service.url + "/ingest",
                                       json={"source": "a", "metrics": {"m": 1}})
    assert status == 200
    turn = os.open(f"{service.db_path}.commit", os.O_RDWR)
    fcntl.flock(turn, fcntl.LOCK_EX)
    try:
        answers = await asyncio.gather(*(
            fresh_connection("POST", service.url + "/ingest",
                             json={"source": "a", "metrics": {"m": 2 + n}})
            for n in range(6)))
    finally:
        fcntl.flock(turn, fcntl.LOCK_UN)
        os.close(turn)
    for status, text in answers:
        assert status == 503, text
        assert "turn to commit" in text
    for n in range(20):  # each on a connection of its own: both workers answer some
        status, text = await fresh_connection("POST", service.url + "/ingest",
                                              json={"source": "a", "metrics": {"m": 10 + n}})
        assert status == 200, text
    await asyncio.to_thread(service.process.send_signal, signal.SIGTERM)
    assert await asyncio.to_thread(service.process.wait, 40) == 0
    assert "Traceback" not in service.log()


def test_workers_stop_when_their_supervisor_is_sigkilled(
    service_factory: Callable[..., Service],
) -> None:
    """Orphaned workers would serve on unwatched, beside a restarted supervisor's workers on
    the same file: they drain and exit instead."""
    service = started(service_factory)
    workers = worker_pids(service)
    assert len(workers) == 2
    service.process.kill()
    service.process.wait(10)

    def gone(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] in "ZX"
        except (OSError, IndexError):
            return True

    wait_until(lambda: all(gone(pid) for pid in workers), 30, "the orphaned workers to exit")
    assert "the supervisor (PID" in service.log()


async def test_big_pushes_of_the_same_new_series_to_both_workers_make_each_series_once(
        service_factory: Callable[..., Service]) -> None:
    """Each worker prepares its big push's series in slices (store/preparing.py) while the
    other does the same for the same series: one row per series, every sample stored."""
    service = service_factory(env={"METRICS_BATCH_MAX_SAMPLES": "100"},
                              args=("--workers", "2"))
    wait_until(lambda: service.log().count("listening on") >= 2, 30, "both workers")
    stamp = int(time.time()) - 60

    def body(offset: int) -> str:
        return "".join(f"slurm_job,job_id={job} cpu={job}i {stamp + offset}\n"
                       for job in range(3000))

    answers = await asyncio.gather(*(fresh_connection(
        "POST", service.url + "/write?db=hpc&precision=s", data=body(offset))
        for offset in range(4)))
    assert [status for status, _ in answers] == [204] * 4
    db = service.db_path
    assert rows_of(db, "SELECT count(*) FROM series") == 3000
    assert rows_of(db, "SELECT count(*) FROM samples") == 4 * 3000


def test_connections_made_as_the_port_first_listens_reach_every_worker(
        service_factory: Callable[..., Service]) -> None:
    """The supervisor binds every worker's socket before starting any (listeners.py): a pool
    of keep-alive connections opened the moment the port first takes one (a load balancer's,
    a benchmark's) is spread over both workers, not left on whichever started first."""
    port = free_port()
    with ThreadPoolExecutor(1) as pool:
        opening = pool.submit(open_pool, port, 32)
        service = service_factory(args=("--workers", "2"), port=port)
        sockets = opening.result(timeout=60)
    try:
        for sock in sockets:  # (answered by the worker that accepted it, once it serves)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        for sock in sockets:
            answer = b""
            while b'"ok"' not in answer:
                chunk = sock.recv(4096)
                assert chunk, f"closed after {answer!r}"
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200")
        held = {pid: established(pid, port) for pid in worker_pids(service)}
    finally:
        for sock in sockets:
            sock.close()
    assert len(held) == 2, held
    assert sum(held.values()) == 32, held
    assert all(count > 0 for count in held.values()), f"one worker got them all: {held}"


def open_pool(port: int, count: int) -> list[socket.socket]:
    """`count` connections to 127.0.0.1:port, each made as soon as the port takes one
    (refused: try again at once, for at most 30 s)."""
    sockets: list[socket.socket] = []
    deadline = time.monotonic() + 30
    while len(sockets) < count:
        assert time.monotonic() < deadline, "the port never listened"
        sock = socket.socket()
        sock.settimeout(30)
        try:
            sock.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            sock.close()
            continue
        sockets.append(sock)
    return sockets


def established(pid: int, port: int) -> int:
    """How many connections to `port` the process holds open (its fds against /proc/net)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01" and fields[9] in inodes:
                count += 1
    return count


def rows_of(db: Path, sql: str) -> int:
    with sqlite3.connect(db) as conn:
        count = int(conn.execute(sql).fetchone()[0])
    conn.close()
    return count


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_a_stopped_server_leaves_its_database_in_the_one_file(
        service_factory: Callable[..., Service], tmp_path: Path, workers: str) -> None:
    """README, "Stopping": the WAL checkpointed, so a copy of metrics.db alone has every
    sample acknowledged."""
    service = service_factory(args=("--workers", workers))
    for i in range(30):
        status, _ = await fresh_connection(
            "POST", service.url + "/ingest", json={"source": f"node{i}", "metrics": {"a": i}})
        assert status == 200
    os.kill(service.process.pid, signal.SIGTERM)
    assert await asyncio.to_thread(service.process.wait, 30) == 0
    wal = service.db_path.with_name(service.db_path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    copy = tmp_path / "copy.db"
    copy.write_bytes(service.db_path.read_bytes())
    assert rows_of(copy, "SELECT count(*) FROM samples") == 30


async def test_workers_that_cannot_start_again_with_none_serving_end_the_supervisor(
        service_factory: Callable[..., Service], postgres: PostgresServer) -> None:
    service = started(service_factory, db=postgres.new_database())
    await asyncio.to_thread(postgres.cluster.stop, "fast")
    try:
        for pid in worker_pids(service):
            os.kill(pid, signal.SIGKILL)
        code = await asyncio.to_thread(service.process.wait, 60)
    finally:
        await asyncio.to_thread(postgres.cluster.start)
    assert code == 1
    assert "3 times right after starting; stopping" in service.log()
    assert "Traceback" not in service.log()


def test_a_bad_tokens_file_stops_the_supervisor_in_one_line(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text('[[token]]\nname = "ci"\ntoken = "short"\n')
    tokens.chmod(0o600)
    result = subprocess.run(
        [sys.executable, "-m", "metrics_ingest", "serve", "--workers", "2", "--port",
         str(free_port()), "--db", str(tmp_path / "m.db"), "--tokens-file", str(tokens)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env={key: value for key, value in os.environ.items()
             if not key.startswith("METRICS_")})
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"metrics-ingest: error: {tokens}: token 'ci': `token` must be a string of at least "
        "16 characters")
    assert "worker" not in result.stderr


def test_a_reload_asked_for_as_workers_start_kills_none(
        service_factory: Callable[..., Service]) -> None:
    service = service_factory(args=("--workers", "2"))  # (returns once one listens)
    for _ in range(40):  # SIGHUP every 25 ms while the workers start, then while they serve
        service.process.send_signal(signal.SIGHUP)
        time.sleep(0.025)  # (the pace of the signals, not a synchronisation)
    wait_until(lambda: service.log().count("listening on") >= 2, 30, "both workers")
    first, _ = worker_pids(service)
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: "worker 1 exited" in service.log() or "worker 2 exited" in service.log(),
               30, "the kill to be seen")
    for _ in range(80):  # ... and while the killed one starts again
        service.process.send_signal(signal.SIGHUP)
        time.sleep(0.025)
    wait_until(lambda: service.log().count("listening on") >= 3, 30, "the worker started again")
    assert service.log().count("exited (code") == 1, service.log()
    assert service.process.poll() is None


class Exited:
    """What Supervisor.ended reads of a worker process: its exit, and whether it lives."""

    def __init__(self, alive: bool) -> None:
        self.alive = alive
        self.exitcode = None if alive else 1

    def join(self, timeout: float) -> None:
        pass

    def is_alive(self) -> bool:
        return self.alive


@pytest.mark.parametrize(("other_failing", "other_age", "gives_up"), [
    (0, 1.0, False),   # the other in its first life (starting or serving)
    (2, 60.0, False),  # the other started again after failing, serving for a minute since
    (2, 1.0, True),    # the other started again after failing, a second ago: not serving
])
def test_the_supervisor_gives_up_only_with_none_serving(
        tmp_path: Path, other_failing: int, other_age: float, gives_up: bool) -> None:
    from metrics_ingest.config import Settings
    from metrics_ingest.supervisor import EARLY_EXITS_ALLOWED, Supervisor

    supervisor = Supervisor(Settings(db_path=tmp_path / "m.db", auth_tokens=("t" * 16,)))
    supervisor.stop = lambda signum, frame: None  # type: ignore[method-assign]
    now = time.monotonic()
    supervisor.workers = {1: Exited(alive=False), 2: Exited(alive=True)}  # type: ignore[dict-item]
    supervisor.started = {1: now, 2: now - other_age}
    supervisor.failing = {1: EARLY_EXITS_ALLOWED - 1, 2: other_failing}
    supervisor.ended(1)
    assert supervisor.gave_up is gives_up
    assert (1 in supervisor.due) is not gives_up
