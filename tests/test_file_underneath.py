"""The file underneath, against the real CLI server: a database file deleted or replaced while
serving is noticed within seconds (pushes and /readyz get 503 naming why) and nothing is
acknowledged that is not in the file at the path; a second server on the file refuses to
start, saying which process holds it."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import TOKEN, Service, rows, wait_until
from tests.test_cli import post

pytestmark = pytest.mark.slow


def readyz(service: Service, token: str | None = None) -> tuple[int, dict[str, str]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(service.url + "/readyz", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def remove_database(db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_file_gone_underneath_is_noticed(tmp_path: Path, how: str,
                                           service_factory: Callable[..., Service]) -> None:
    service = service_factory()
    now = int(time.time())
    assert post(service.url, {"source": "hpc", "timestamp": now - 10,
                              "metrics": {"before": 1}})[0] == 200
    if how == "deleted":
        remove_database(service.db_path)
    else:  # another database moved into place, as `mv other.db metrics.db` does
        other = tmp_path / "other.db"
        shutil.copy(service.db_path, other)
        remove_database(service.db_path)
        os.rename(other, service.db_path)
    # No push is acknowledged from now on, noticed or not yet.
    status, answer = post(service.url, {"source": "hpc", "timestamp": now,
                                        "metrics": {"after": 1}})
    assert status == 503
    assert "was deleted or replaced" in answer["error"]
    wait_until(lambda: readyz(service)[0] == 503, 10, "/readyz to turn 503")
    status, body = readyz(service)
    assert "deleted or replaced" in body["error"]
    assert str(service.db_path) not in body["error"]  # the path only for a token holder
    assert str(service.db_path) in readyz(service, TOKEN)[1]["error"]
    service.process.terminate()
    assert service.process.wait(10) == 0
    if how == "replaced":  # the file at the path never got what was refused
        assert rows(service.db_path, "SELECT count(*) FROM metrics WHERE metric_name = "
                    "'after'") == [(0,)]
    else:
        assert not service.db_path.exists()


def test_a_second_server_on_the_same_file_refuses_to_start(
        tmp_path: Path, service_factory: Callable[..., Service]) -> None:
    first = service_factory()
    second = subprocess.run(
        [sys.executable, "-m", "metrics_ingest", "serve", "--port", "0", "--db",
         str(first.db_path)], cwd=tmp_path, env={**os.environ, "METRICS_AUTH_TOKEN": TOKEN},
        capture_output=True, text=True, timeout=60)
    assert second.returncode != 0
    errors = [line for line in second.stderr.splitlines() if "error" in line]
    assert errors == [f"metrics-ingest: error: another metrics-ingest server (PID "
                      f"{first.process.pid}) is serving {first.db_path}; two servers must "
                      "not share one SQLite file"]
    assert post(first.url, {"source": "hpc", "metrics": {"a": 1}})[0] == 200
    conn = sqlite3.connect(first.db_path)
    assert conn.execute("SELECT count(*) FROM metrics").fetchone() == (1,)
    conn.close()
