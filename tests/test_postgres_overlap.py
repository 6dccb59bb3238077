"""A big plain batch's tail (latest rows, sources, notice, COMMIT) finishing on another thread
while the next batch is written on the second connection (store/postgres/tails.py): the
later batch still wins for equal keys, a batch counts as committed only once its COMMIT
returned, and a tail that fails stores nothing of its batch."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from metrics_ingest.model import Change, Push, SampleGroup
from metrics_ingest.store import Later, StorageError, open_store
from metrics_ingest.store.postgres.session import PostgresWriteSession
from tests.conftest import PostgresServer
from tests.pg_cluster import wait_for

NAMES = [f"m{number}" for number in range(100)]
STAMP = 1_700_000_000


def push(stamp: int, value: float, hosts: int = 10) -> Push:
    """1,000 samples: 100 metrics of `hosts` hosts, all of value `value`."""
    groups = [SampleGroup("bulk", f'{{"host":"h{host}"}}', stamp, NAMES, [value] * len(NAMES))
              for host in range(hosts)]
    return Push(groups, len(groups) * len(NAMES), 0.0, asyncio.Future(loop=LOOP))


LOOP = asyncio.new_event_loop()


@pytest.fixture
def url(postgres: PostgresServer) -> str:
    return postgres.new_database()


@pytest.fixture
def session(url: str) -> Iterator[PostgresWriteSession]:
    store = open_store(url)
    store.migrate()
    opened = store.open_writer("full")
    assert isinstance(opened, PostgresWriteSession)
    try:
        yield opened
    finally:
        opened.close()


def values(url: str) -> tuple[set[float], set[float]]:
    """The distinct sample values at STAMP + 1, and the distinct latest values."""
    with psycopg.connect(url) as conn:
        samples = {row[0] for row in conn.execute(
            "SELECT value FROM samples WHERE timestamp = %s", (STAMP + 1,))}
        latest = {row[0] for row in conn.execute("SELECT value FROM latest")}
    return samples, latest


def waiting(url: str, pid: int) -> bool:
    """True while the backend `pid` waits for a lock."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                           (pid,)).fetchone()
    return row is not None and row[0] == "Lock"


def test_the_later_batch_wins_over_one_still_committing(
        session: PostgresWriteSession, url: str) -> None:
    first = session.commit([push(STAMP, 0.0)])  # creates the series: committed in line
    assert isinstance(first, Change)
    with psycopg.connect(url) as blocker, ThreadPoolExecutor(2) as threads:
        # The earlier batch's tail stalls on the sources row, after its latest rows.
        blocker.execute("SELECT * FROM sources FOR UPDATE")
        earlier = session.commit([push(STAMP + 1, 1.0)])
        assert isinstance(earlier, Later)
        committing = threads.submit(earlier.finish)
        # The later batch, the same keys: its COPY waits for the earlier transaction.
        later_conn = session.turns.conns[session.turns.slot]
        assert later_conn is not None
        later = threads.submit(session.commit, [push(STAMP + 1, 2.0)])
        wait_for(lambda: waiting(url, later_conn.info.backend_pid), 10,
                 "the later batch waiting for the earlier one")
        assert not committing.done()
        assert not later.done()
        assert values(url) == (set(), {0.0})  # neither is committed
        blocker.rollback()
        assert isinstance(committing.result(10), Change)
        result = later.result(10)
        if isinstance(result, Later):
            result.finish()
    assert values(url) == ({2.0}, {2.0})


def test_a_failed_tail_stores_nothing_and_the_next_batch_commits(
        session: PostgresWriteSession, url: str) -> None:
    session.commit([push(STAMP, 0.0)])
    with psycopg.connect(url, autocommit=True) as other:
        other.execute("BEGIN")
        other.execute("SELECT * FROM sources FOR UPDATE")
        earlier = session.commit([push(STAMP + 1, 1.0)])
        assert isinstance(earlier, Later)
        conn = session.turns.conns[(session.turns.slot + 1) % 2]
        assert conn is not None
        pid = conn.info.backend_pid
        with ThreadPoolExecutor(1) as thread:
            committing = thread.submit(earlier.finish)
            wait_for(lambda: waiting(url, pid), 10, "the tail waiting")
            other.execute("SELECT pg_terminate_backend(%s)", (pid,))
            with pytest.raises(StorageError):
                committing.result(10)
        other.execute("ROLLBACK")
    assert values(url) == (set(), {0.0})
    for stamp in (STAMP + 1, STAMP + 2):  # one on each connection, the lost one replaced
        result = session.commit([push(stamp, 3.0)])
        if isinstance(result, Later):
            result.finish()
    assert values(url) == ({3.0}, {3.0})
