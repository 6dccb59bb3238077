"""Backing up the SQLite file while the server takes pushes (README "Run it on a server"):
`VACUUM INTO` through `metrics-ingest db query`, or the sqlite3 shell's `.backup`; restored
as the README says, the server serves every sample acknowledged before the backup started."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import AUTH, Service, required_tool, wait_until

pytestmark = pytest.mark.slow

PUSHERS = 2


class Pushers:
    """Threads pushing one sample each, numbered; `acked` holds the numbers answered 200."""

    def __init__(self, url: str, base: int) -> None:
        self.url = url
        self.base = base
        self.acked: list[int] = []
        self.failed: list[str] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.push, args=(lane,), daemon=True)
                        for lane in range(PUSHERS)]

    def push(self, lane: int) -> None:
        number = lane
        while not self.stop.is_set():
            body = {"source": "backup", "timestamp": self.base + number,
                    "metrics": {"pushed": number}}
            request = urllib.request.Request(
                f"{self.url}/ingest", data=json.dumps(body).encode(), method="POST",
                headers={**AUTH, "Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    status = response.status
            except (urllib.error.URLError, OSError) as exc:
                with self.lock:
                    self.failed.append(str(exc))
                return
            with self.lock:
                if status == 200:
                    self.acked.append(number)
                else:
                    self.failed.append(f"{number}: {status}")
            number += PUSHERS

    def count(self) -> int:
        with self.lock:
            return len(self.acked)

    def snapshot(self) -> set[int]:
        with self.lock:
            return set(self.acked)

    def __enter__(self) -> Pushers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


def vacuum_into(db: Path, backup: Path) -> list[str]:
    return [sys.executable, "-m", "metrics_ingest", "db", "query", f"VACUUM INTO '{backup}'",
            "--db", str(db)]


def sqlite3_backup(db: Path, backup: Path) -> list[str]:
    return [required_tool("sqlite3", "sqlite3"), str(db), f".backup '{backup}'"]


def served_values(service: Service) -> set[int]:
    url = f"{service.url}/api/metrics?source=backup&window=1h&limit=50000"
    with urllib.request.urlopen(url, timeout=30) as response:
        rows = json.loads(response.read())
    return {int(row["metric_value"]) for row in rows}


@pytest.mark.parametrize("backup_command", [vacuum_into, sqlite3_backup],
                         ids=["vacuum-into", "sqlite3-backup"])
def test_a_backup_taken_under_load_restores_every_acknowledged_sample(
        tmp_path: Path, service_factory: Callable[..., Service],
        backup_command: Callable[[Path, Path], list[str]]) -> None:
    service = service_factory()
    backup = tmp_path / "backups" / "metrics-backup.db"
    backup.parent.mkdir()
    command = backup_command(service.db_path, backup)
    with Pushers(service.url, int(time.time()) - 3000) as pushers:
        wait_until(lambda: pushers.count() >= 200 or bool(pushers.failed), 60,
                   "200 acknowledged pushes")
        before = pushers.snapshot()  # acknowledged before the backup starts
        started = time.monotonic()
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        took = time.monotonic() - started
        during = pushers.count() - len(before)
        assert result.returncode == 0, result.stderr
        # Pushes carry on after the backup as well.
        goal = pushers.count() + 100
        wait_until(lambda: pushers.count() >= goal or bool(pushers.failed), 60,
                   "100 more acknowledged pushes")
    assert pushers.failed == []
    print(f"{backup_command.__name__}: {took * 1000:.0f} ms, {len(before)} pushes acknowledged "
          f"before it, {during} while it ran, {pushers.count()} in all")
    with sqlite3.connect(backup) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()

    # Restore as the README says: stop the server, take away the file with its -wal and
    # -shm, put the backup in its place, start again.
    service.process.terminate()
    assert service.process.wait(30) == 0
    for suffix in ("", "-wal", "-shm"):
        Path(f"{service.db_path}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(backup, service.db_path)
    restored = service_factory()
    assert restored.db_path == service.db_path
    served = served_values(restored)
    assert before - served == set(), f"{len(before - served)} acknowledged samples missing"
    # Nothing in it that was never pushed.
    assert served <= set(range(max(pushers.snapshot()) + PUSHERS))
