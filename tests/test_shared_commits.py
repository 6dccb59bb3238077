"""A commit of one of `serve --workers N` on SQLite with `synchronous=full`
(store/sqlite/turns.py): written under its turn with SQLite's NORMAL, the turn ended, then
the WAL fsynced by the session before the commit returns (so before any answer); a WAL that
cannot be synced fails the commit. Alone, SQLite syncs inside COMMIT as asked."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from pathlib import Path

import pytest

from metrics_ingest.model import Push, SampleGroup
from metrics_ingest.store import StorageError, open_store
from metrics_ingest.store.sqlite.session import SQLiteWriteSession
from metrics_ingest.store.sqlite.turns import CommitTurns
from tests.conftest import push_of

NORMAL, FULL = 1, 2


def push(value: float) -> Push:
    return push_of([SampleGroup("hpc", "{}", int(time.time()), ["load"], [value])])


def session_of(path: Path, shared: bool, synchronous: str = "full") -> SQLiteWriteSession:
    store = open_store(path, shared=shared)
    store.migrate()
    session = store.open_writer(synchronous)  # type: ignore[arg-type]
    assert isinstance(session, SQLiteWriteSession)
    return session


def synchronous_of(session: SQLiteWriteSession) -> int:
    return int(session.db.execute("PRAGMA synchronous").fetchone()[0])


async def test_a_shared_commit_ends_its_turn_before_it_returns(tmp_path: Path) -> None:
    session = session_of(tmp_path / "m.db", shared=True)
    assert synchronous_of(session) == NORMAL  # (the session syncs the WAL itself)
    other = CommitTurns(tmp_path / "m.db")
    try:
        with session.turn():
            with pytest.raises(BlockingIOError):  # the turn is held while committing...
                fcntl.flock(other.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            session.commit([push(1.0)])
            fcntl.flock(other.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ...and free once done
            fcntl.flock(other.fd, fcntl.LOCK_UN)
    finally:
        other.close()
        session.close()
    with sqlite3.connect(tmp_path / "m.db") as conn:
        assert conn.execute("SELECT value FROM samples").fetchall() == [(1.0,)]
    conn.close()


async def test_a_shared_commit_whose_wal_cannot_be_synced_fails(tmp_path: Path) -> None:
    """A WAL deleted underneath (its frames would be lost at the next open) fails the commit
    with the reason, instead of acknowledging it."""
    session = session_of(tmp_path / "m.db", shared=True)
    try:
        session.commit([push(1.0)])
        os.unlink(tmp_path / "m.db-wal")
        with pytest.raises(StorageError, match="WAL could not be synced"):
            session.commit([push(2.0)])
    finally:
        session.close()


@pytest.mark.parametrize(("shared", "asked", "expected"), [
    (False, "full", FULL), (False, "normal", NORMAL), (True, "normal", NORMAL)])
async def test_otherwise_sqlite_syncs_as_asked(tmp_path: Path, shared: bool, asked: str,
                                               expected: int) -> None:
    session = session_of(tmp_path / "m.db", shared=shared, synchronous=asked)
    try:
        assert synchronous_of(session) == expected
        assert session.shared is None or session.shared.wal is None
        session.commit([push(1.0)])
    finally:
        session.close()
