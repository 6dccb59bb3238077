"""The real server as a subprocess under load: SIGKILL at varied points loses nothing that was
acknowledged; SIGTERM drains and exits 0; nothing is ever half-stored."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Service, wait_until
from tests.loadclient import PushLoad, expected, stored_pushes

pytestmark = pytest.mark.slow


def no_duplicates(service: Service) -> None:
    conn = sqlite3.connect(service.db_path)
    try:
        twice = conn.execute(
            "SELECT source, metric_name, timestamp, count(*) FROM metrics"
            " GROUP BY source, labels, metric_name, timestamp HAVING count(*) > 1").fetchall()
    finally:
        conn.close()
    assert twice == []


def check_all_or_nothing(stored: dict[int, list[tuple[str, float]]], load: PushLoad) -> None:
    for index, samples in stored.items():
        assert index < load.attempted
        assert samples == expected(index), f"push {index} is half-stored or altered: {samples}"


@pytest.mark.parametrize("kill_after", [1, 150, 1200])
async def test_sigkill_loses_no_acknowledged_sample(
    service_factory: Callable[..., Service], kill_after: int
) -> None:
    service = service_factory()
    load = PushLoad(service.url, workers=16)
    load.start()
    await load.wait_for_acks(kill_after)
    service.process.send_signal(signal.SIGKILL)
    await asyncio.to_thread(service.process.wait, 10)
    await load.stop()
    acked = set(load.acked)

    restarted = service_factory()  # same database file
    stored = stored_pushes(restarted.db_path)
    missing = sorted(index for index in acked if index not in stored)
    assert not missing, f"{len(missing)} acknowledged pushes lost, e.g. {missing[:5]}"
    check_all_or_nothing(stored, load)
    no_duplicates(restarted)
    print(f"kill after {kill_after}: acked {len(acked)}, stored {len(stored)}, "
          f"in flight at the kill {len(load.dropped)}")


async def test_sigterm_under_load_drains_and_exits_zero(
    service_factory: Callable[..., Service]
) -> None:
    service = service_factory()
    load = PushLoad(service.url, workers=32)
    load.start()
    await load.wait_for_acks(300)
    started = time.monotonic()
    service.process.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(service.process.wait, 10)
    elapsed = time.monotonic() - started
    await load.stop()
    assert code == 0
    assert elapsed < 10
    stored = stored_pushes(service.db_path)
    assert load.acked <= set(stored), "an acknowledged push is missing after SIGTERM"
    check_all_or_nothing(stored, load)
    # Refused pushes (503 while stopping) left nothing behind.
    assert not set(load.refused) & set(stored)
    assert set(load.refused.values()) <= {503}
    print(f"SIGTERM: exit {code} in {elapsed:.2f} s; acked {len(load.acked)}, "
          f"refused {len(load.refused)}, dropped {len(load.dropped)}")


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (children, their children, ...), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


def test_parse_workers_exit_with_a_sigkilled_server(
        service_factory: Callable[..., Service]) -> None:
    """The worker processes that parse big bodies (and their forkserver) do not outlive
    the server, even when it is killed with no chance to stop them."""
    service = service_factory()
    wait_until(lambda: len(descendants(service.process.pid)) >= 2, 30,
               "the parse workers to start")
    helpers = descendants(service.process.pid)
    service.process.send_signal(signal.SIGKILL)
    service.process.wait(10)
    wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in helpers), 15,
               f"the server's helper processes {sorted(helpers)} to exit")
