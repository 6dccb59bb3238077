"""Issue 11's time and retention rules against the real CLI server: the Pushgateway API's
`?timestamp=` is bounded like every timestamp, and a group older than the retention period
is still exported after `metrics-ingest purge` runs beside the server."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import TOKEN, Service
from tests.test_cli import cli

pytestmark = pytest.mark.slow


def put(url: str, body: bytes) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, method="PUT",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_push_timestamps_are_bounded(service_factory: Callable[..., Service]) -> None:
    service = service_factory()
    status, body = put(f"{service.url}/metrics/job/pinned?timestamp=999999999999", b"x 1\n")
    assert status == 400
    assert "more than 1 hour in the future" in body
    status, _ = put(f"{service.url}/metrics/job/pinned?timestamp={int(time.time()) - 60}",
                    b"x 1\n")
    assert status == 200


def test_an_old_group_survives_the_purge(tmp_path: Path,
                                         service_factory: Callable[..., Service]) -> None:
    service = service_factory(env={"METRICS_RETENTION_DAYS": "30"})
    old = int(time.time()) - 20 * 86400  # pushed 20 days ago, with a 7-day retention below
    status, _ = put(f"{service.url}/metrics/job/weekly?timestamp={old}",
                    b"# TYPE weekly_last_success gauge\nweekly_last_success 1\n")
    assert status == 200
    purged = cli("purge", "--days", "7", "--db", str(service.db_path), cwd=tmp_path)
    assert purged.returncode == 0, purged.stderr
    assert purged.stdout.startswith("purged 0 samples older than 7 days")
    with urllib.request.urlopen(service.url + "/metrics", timeout=30) as response:
        text = response.read().decode()
    assert 'weekly_last_success{source="weekly",instance="",job="weekly"} 1\n' in text
