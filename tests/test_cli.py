"""The real `metrics-ingest` command as a subprocess: every subcommand, the remembered token,
bad configuration, and a clean stop on SIGTERM/SIGINT with nothing acknowledged lost."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from metrics_ingest import __version__
from metrics_ingest.store.sqlite import migrations
from tests.conftest import TOKEN, Service, rows

pytestmark = pytest.mark.slow


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None,
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "metrics_ingest", *args], cwd=cwd,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=60)


def post(url: str, payload: Any, token: str = TOKEN) -> tuple[int, Any]:
    request = urllib.request.Request(
        url + "/ingest", data=json.dumps(payload).encode(), method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_version(tmp_path: Path) -> None:
    result = cli("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"metrics-ingest {__version__}"
    entry = Path(sys.executable).with_name("metrics-ingest")
    assert subprocess.run([str(entry), "--version"], capture_output=True, text=True,
                          timeout=60).stdout.strip() == f"metrics-ingest {__version__}"


def test_migrate_is_idempotent_and_query_prints(tmp_path: Path) -> None:
    db = tmp_path / "nested" / "m.db"
    first = cli("db", "migrate", "--db", str(db), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    versions = [migration.version for migration in migrations.discover()]
    assert f"applied {len(versions)} migration(s)" in first.stdout
    second = cli("db", "migrate", "--db", str(db), cwd=tmp_path)
    assert "schema up to date" in second.stdout
    assert rows(db, "SELECT version FROM schema_version") == [(v,) for v in versions]
    assert rows(db, "PRAGMA journal_mode") == [("wal",)]

    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO series VALUES (1, 'slurm_pending_jobs', 'hpc', '', '')")
    conn.execute("INSERT INTO samples VALUES (1702345678, 1, 42)")
    conn.execute("INSERT INTO latest (series_id, timestamp, value) VALUES (1, 1702345678, 42)")
    conn.commit()
    conn.close()
    table = cli("db", "query", "SELECT * FROM metrics LIMIT 10", "--db", str(db), cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert [cell.strip() for cell in lines[0].split(" | ")][:6] == [
        "id", "source", "timestamp", "metric_name", "metric_value", "created_at"]
    assert "hpc" in lines[2]
    assert lines[2].split(" | ")[5].strip() == "1702345678"  # INTEGER Unix seconds, as on D1
    assert lines[-1] == "(1 row)"
    as_json = cli("db", "query", "SELECT source, timestamp, metric_name, metric_value "
                  "FROM metrics", "--db", str(db), "--json", cwd=tmp_path)
    assert json.loads(as_json.stdout) == [{"source": "hpc", "timestamp": 1702345678,
                                           "metric_name": "slurm_pending_jobs",
                                           "metric_value": 42.0}]


def test_query_errors_are_one_line(tmp_path: Path) -> None:
    missing = cli("db", "query", "SELECT 1", "--db", str(tmp_path / "none.db"), cwd=tmp_path)
    assert missing.returncode == 1
    assert missing.stderr.startswith("metrics-ingest: error: no database at")
    cli("db", "migrate", "--db", str(tmp_path / "m.db"), cwd=tmp_path)
    bad = cli("db", "query", "SELEC nonsense", "--db", str(tmp_path / "m.db"), cwd=tmp_path)
    assert bad.returncode == 1
    assert bad.stderr.count("\n") == 1
    assert "syntax error" in bad.stderr


def test_purge_command(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    cli("db", "migrate", "--db", str(db), cwd=tmp_path)
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO series VALUES (1, 'a', 'hpc', '', '')")
    conn.executemany("INSERT INTO samples VALUES (?, 1, 1)", [(t,) for t in range(1000, 1100)])
    conn.execute("INSERT INTO latest (series_id, timestamp, value) VALUES (1, 1099, 1)")
    conn.commit()
    conn.close()
    result = cli("purge", "--days", "3", "--db", str(db), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"purged 100 samples older than 3 days from {db}"
    assert rows(db, "SELECT count(*) FROM samples") == [(0,)]


@pytest.mark.parametrize(("args", "env", "message"), [
    (("serve",), {"METRICS_PORT": "eighty"}, "METRICS_PORT must be an integer"),
    (("serve", "--port", "99999"), {}, "--port (METRICS_PORT) must be between 0 and 65535"),
    (("serve",), {"METRICS_RETENTION_DAYS": "0"}, "METRICS_RETENTION_DAYS must be between"),
    (("serve",), {"METRICS_PURGE_CRON": "soon"}, "METRICS_PURGE_CRON is not a valid cron"),
    (("purge", "--days", "x"), {}, "--days (METRICS_RETENTION_DAYS) must be an integer"),
])
def test_bad_configuration_is_one_line(tmp_path: Path, args: tuple[str, ...],
                                       env: dict[str, str], message: str) -> None:
    result = cli(*args, cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert result.stderr.startswith(f"metrics-ingest: error: {message}")
    assert result.stderr.count("\n") == 1


def test_generated_token_is_remembered(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "METRICS_AUTH_TOKEN"}
    db = tmp_path / "data" / "metrics.db"
    token_file = tmp_path / "data" / "auth-token"
    tokens = []
    for attempt in range(2):
        process = subprocess.Popen(
            [sys.executable, "-m", "metrics_ingest", "serve", "--port", "0", "--db", str(db)],
            cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
        assert process.stderr is not None
        lines: list[str] = []
        while not any("listening on" in line for line in lines):
            line = process.stderr.readline()
            assert line, "".join(lines)
            lines.append(line)
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=15)
        assert process.returncode == 0
        output = "".join(lines) + rest
        token = token_file.read_text().strip()
        assert len(token) >= 32
        assert token not in output, "the token must never be logged"
        assert str(token_file) in output
        assert ("generated" if attempt == 0 else "using") in output
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        tokens.append(token)
    assert tokens[0] == tokens[1]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_flushes_and_exits_zero(service_factory: Callable[..., Service],
                                       signum: int) -> None:
    service = service_factory()
    status, body = post(service.url, [
        {"source": "hpc", "metrics": {f"m{i}": i for i in range(100)}, "timestamp": 1795000000},
        {"source": "server", "metrics": {"cpu": 1.5}}])
    assert (status, body) == (200, {"status": "ok", "inserted": 101})
    service.process.send_signal(signum)
    assert service.process.wait(10) == 0
    log = service.log()
    assert "stopped cleanly" in log
    assert TOKEN not in log
    assert rows(service.db_path, "SELECT count(*) FROM metrics") == [(101,)]
    # The database was closed properly: the WAL was checkpointed and removed.
    assert not Path(f"{service.db_path}-wal").exists()


def test_signal_with_idle_keepalive_client_still_exits(
    service_factory: Callable[..., Service]
) -> None:
    import http.client

    service = service_factory()
    host, port = service.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", "/healthz")
    assert conn.getresponse().read()
    service.process.send_signal(signal.SIGTERM)
    assert service.process.wait(10) == 0
    conn.close()


def test_request_log_lines(service_factory: Callable[..., Service]) -> None:
    service = service_factory(args=("--log-format", "json"))
    post(service.url, {"source": "hpc", "metrics": {"a": 1}})
    service.process.send_signal(signal.SIGTERM)
    service.process.wait(10)
    entries = [json.loads(line) for line in service.log().splitlines() if line.startswith("{")]
    access = [entry for entry in entries if entry.get("path") == "/ingest"]
    assert access
    assert access[0]["method"] == "POST"
    assert access[0]["status"] == 200
    assert "duration_ms" in access[0]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_on_a_port_taken_exits_1_naming_the_address(tmp_path: Path, workers: str) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        done = cli("serve", "--host", "127.0.0.1", "--port", str(port), "--workers", workers,
                   "--db", str(tmp_path / "m.db"), cwd=tmp_path,
                   env={"METRICS_AUTH_TOKEN": TOKEN})
    finally:
        taken.close()
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("metrics-ingest: error: ")
    assert "127.0.0.1" in last
    assert str(port) in last
    assert "in use" in last.lower()
    assert "Traceback" not in done.stderr


def test_a_tmpdir_too_long_for_a_unix_socket_stops_serve_in_one_line(tmp_path: Path) -> None:
    long = tmp_path / ("t" * 40) / ("m" * 40)
    long.mkdir(parents=True)
    result = subprocess.run(
        [sys.executable, "-m", "metrics_ingest", "serve", "--port", "0", "--db",
         str(tmp_path / "m.db")], capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env={**{key: value for key, value in os.environ.items()
                if not key.startswith("METRICS_")}, "TMPDIR": str(long)})
    assert result.returncode == 2
    assert result.stderr == (
        f"metrics-ingest: error: TMPDIR {long} is {len(str(long))} bytes long: the sockets "
        "of the parser and query processes there would pass the 107 bytes a Unix socket "
        "path may hold; give a directory of at most 75 bytes\n")
