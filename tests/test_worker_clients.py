"""The Worker's own clients, unchanged, against the real CLI server: a JSON body sent as
text/plain (.NET's StringContent default), a non-numeric value among numbers, `created_at` as
D1 had it, and the Worker's documented manual cleanup run while the server serves."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import TOKEN, Service
from tests.test_cli import cli

pytestmark = pytest.mark.slow


def send(url: str, body: bytes, content_type: str) -> tuple[int, Any]:
    request = urllib.request.Request(url + "/ingest", data=body, method="POST", headers={
        "Authorization": f"Bearer {TOKEN}", "Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        return str(response.read().decode())


def test_worker_clients_unchanged(tmp_path: Any, service_factory: Callable[..., Service]) -> None:
    service = service_factory(env={"METRICS_RETENTION_DAYS": "30"})
    now = int(time.time())
    old, recent = now - 8 * 86400, now - 60
    # .NET: new StringContent(json) sends text/plain; charset=utf-8.
    dotnet = json.dumps({"source": "hpc", "timestamp": recent,
                         "metrics": {"slurm_pending_jobs": 42, "slurm_running_jobs": 10}})
    assert send(service.url, dotnet.encode(), "text/plain; charset=utf-8") == (
        200, {"status": "ok", "inserted": 2})
    # A non-numeric value is skipped, the rest stored, as the Worker did.
    mixed = json.dumps({"source": "hpc", "timestamp": old,
                        "metrics": {"slurm_pending_jobs": 40, "status": "ok"}})
    status, answer = send(service.url, mixed.encode(), "application/json")
    assert status == 200
    assert answer == {"status": "ok", "inserted": 1,
                      "skipped": [{"path": "metrics.status", "error": "must be a number"}]}
    # created_at is INTEGER Unix seconds, as on D1.
    query = cli("db", "query", "SELECT typeof(created_at), created_at, timestamp FROM metrics"
                " ORDER BY timestamp", "--db", str(service.db_path), "--json", cwd=tmp_path)
    assert query.returncode == 0, query.stderr
    assert json.loads(query.stdout)[0] == {"typeof(created_at)": "integer",
                                           "created_at": old, "timestamp": old}
    # The Worker's manual cleanup, while the server runs: it deletes, says how many, and the
    # server's reads reflect it at once.
    sources = json.loads(get(service.url + "/api/sources?window=14d"))
    assert sources == ["hpc"]
    cleanup = cli("db", "query", "DELETE FROM metrics WHERE timestamp < strftime('%s', 'now', "
                  "'-7 days')", "--db", str(service.db_path), cwd=tmp_path)
    assert cleanup.returncode == 0, cleanup.stderr
    assert cleanup.stdout == "1 row changed\n"
    api = json.loads(get(service.url + "/api/metrics?window=14d"))
    assert sorted((row["metric_name"], row["timestamp"]) for row in api) == [
        ("slurm_pending_jobs", recent), ("slurm_running_jobs", recent)]
    # Deleting the newest samples: /metrics no longer exports them, at the next scrape.
    assert 'slurm_pending_jobs{source="hpc"} 42' in get(service.url + "/metrics")
    removed = cli("db", "query", "DELETE FROM metrics WHERE metric_name = 'slurm_pending_jobs'",
                  "--db", str(service.db_path), cwd=tmp_path)
    assert removed.stdout == "1 row changed\n", removed.stderr
    text = get(service.url + "/metrics")
    assert "slurm_pending_jobs{" not in text
    assert 'slurm_running_jobs{source="hpc"} 10' in text
    # Pushing goes on as before.
    assert send(service.url, dotnet.encode(), "text/plain")[0] == 200
    assert 'slurm_pending_jobs{source="hpc"} 42' in get(service.url + "/metrics")
