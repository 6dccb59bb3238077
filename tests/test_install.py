"""Installed the way a server runs it: `python -m build` makes the sdist and, from it, the
wheel; the wheel goes into a fresh venv outside the checkout, whose `metrics-ingest` serves
pushes and scrapes from any directory. And what a downgrade does."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tarfile
import tomllib
import urllib.request
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port, wait_until

pytestmark = pytest.mark.slow

VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def run(command: Sequence[str | Path], timeout: float = 120, cwd: Path | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(part) for part in command], capture_output=True, text=True,
                            timeout=timeout, cwd=cwd, env=env)
    assert result.returncode == 0, f"{command}: exit {result.returncode}\n{result.stderr}"
    return result


def test_the_wheel_installs_into_a_fresh_venv_and_serves(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    # The sdist first, then the wheel built from the unpacked sdist (what pipx and pip do with
    # a .tar.gz); --no-isolation: the build backend comes from the test extra, not the network.
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, REPO])
    (wheel,) = dist.glob(f"metrics_ingest-{VERSION}-py3-none-any.whl")
    (sdist,) = dist.glob(f"metrics_ingest-{VERSION}.tar.gz")
    migrations = sorted(path.relative_to(REPO / "sql").as_posix()
                        for path in (REPO / "sql").rglob("*.sql"))
    packaged = zipfile.ZipFile(wheel).namelist()
    assert [name for name in migrations if f"metrics_ingest/sql/{name}" not in packaged] == []
    with tarfile.open(sdist) as archive:
        shipped = set(archive.getnames())
    top = f"metrics_ingest-{VERSION}"
    assert f"{top}/deploy/systemd/metrics-ingest.service" in shipped
    assert [name for name in migrations if f"{top}/sql/{name}" not in shipped] == []

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv])
    run([venv / "bin" / "pip", "install", "--quiet", wheel], timeout=300)

    # Nothing of the checkout on the way: another directory, no PYTHONPATH, no venv of ours.
    elsewhere = tmp_path / "srv"
    elsewhere.mkdir()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("METRICS_", "PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = f"{venv / 'bin'}:/usr/bin:/bin"
    where = run([venv / "bin" / "python", "-c",
                 "import metrics_ingest; print(metrics_ingest.__file__)"], cwd=elsewhere, env=env)
    assert Path(where.stdout.strip()).is_relative_to(venv)
    binary = venv / "bin" / "metrics-ingest"
    assert run([binary, "--version"], cwd=elsewhere, env=env).stdout.strip() == \
        f"metrics-ingest {VERSION}"

    port = free_port()
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [binary, "serve", "--port", str(port), "--db", "state/metrics.db"],
            cwd=elsewhere, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        def listening() -> bool:
            assert process.poll() is None, f"serve exited early:\n{log_path.read_text()}"
            return "listening on" in log_path.read_text()

        wait_until(listening, 60, "the installed server to listen")
        assert "applied migrations 0001_initial" in log_path.read_text()
        token = (elsewhere / "state" / "auth-token").read_text().strip()
        url = f"http://127.0.0.1:{port}"
        push = urllib.request.Request(
            f"{url}/ingest", method="POST",
            data=json.dumps({"source": "installed", "metrics": {"wheel_pushes": 7}}).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(push, timeout=30) as response:
            assert json.loads(response.read()) == {"status": "ok", "inserted": 1}
        with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:
            scraped = response.read().decode()
        assert any(line.startswith('wheel_pushes{source="installed"} 7 ')
                   for line in scraped.splitlines()), scraped
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_an_older_release_refuses_a_database_a_newer_one_migrated(tmp_path: Path) -> None:
    db = tmp_path / "metrics.db"
    command = [sys.executable, "-m", "metrics_ingest", "db", "migrate", "--db", str(db)]
    run(command, cwd=tmp_path)
    # What a later release leaves behind: a migration this one does not have.
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO schema_version (version, name, applied_at) "
                     "VALUES (9999, '9999_from_the_future', 0)")
    conn.close()
    for args in (["db", "migrate"], ["serve", "--port", "0"]):
        result = subprocess.run([sys.executable, "-m", "metrics_ingest", *args, "--db", str(db)],
                                cwd=tmp_path, capture_output=True, text=True, timeout=60,
                                env={**os.environ, "METRICS_AUTH_TOKEN": "t"})
        assert result.returncode == 1, result.stderr
        assert "schema is version 9999, newer than this release's" in result.stderr
