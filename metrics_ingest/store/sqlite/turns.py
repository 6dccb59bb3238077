"""Whose turn it is to commit, among `serve --workers N` on one SQLite file, and the fsync
that makes a shared commit durable after its turn.

The turn: an exclusive flock on `<db>.commit`, taken around each write transaction. SQLite's
own lock would do, but a writer that finds it taken sleeps 1, 2, 5, 10... ms before trying
again (its busy handler); a released flock wakes the next worker at once.

The fsync: with `synchronous=full`, SQLite fsyncs the WAL inside COMMIT, under the file's
write lock, so the workers' fsyncs would queue one behind another. A shared session instead
commits with `synchronous=NORMAL` (the WAL written, not synced; SQLite still syncs it before
each checkpoint), ends its turn, then fsyncs the WAL itself (`WalSync`) before anything is
answered: the next worker's commit overlaps this one's fsync, and a sync covers every frame
written before it, the other worker's included. Measured on W13 (bench/README.md, "serve
--workers 2 on SQLite"): two workers 10.3k -> 12.3k pushes/s, interleaved."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from metrics_ingest.config import Synchronous
from metrics_ingest.model import Change
from metrics_ingest.store import StorageError
from metrics_ingest.store.changes import encode_change
from metrics_ingest.store.sqlite import sql

WAIT_SECONDS = 5.0  # as SQLite's busy_timeout: then the write fails (503)
FIRST_PAUSE = 0.00005
LONGEST_PAUSE = 0.001
PRUNE_EVERY = 1000  # commits between two prunes of the change notices


class SharedFile:
    """What one of `serve --workers N` adds to its write session on the file: its turn to
    commit, the change notices it leaves the other workers, and (synchronous=full) its own
    fsync of the WAL once the turn is over."""

    def __init__(self, db_path: Path, origin: str, synchronous: Synchronous) -> None:
        self.origin = origin
        self.turns = CommitTurns(db_path)
        self.wal = WalSync(db_path) if synchronous == "full" else None
        # (full: SQLite writes the WAL, this syncs it after the turn)
        self.sqlite_synchronous: Synchronous = "normal" if self.wal else synchronous
        self.commits = 0

    def notify(self, db: sqlite3.Connection, change: Change) -> None:
        """In the open transaction: the change notice for the other workers."""
        db.execute(sql.INSERT_CHANGE, (self.origin, encode_change(self.origin, change)))
        self.commits += 1
        if self.commits % PRUNE_EVERY == 0:
            db.execute(sql.PRUNE_CHANGES, (sql.CHANGES_KEPT,))

    def synced(self) -> None:
        """After a commit: the turn ended, then every WAL frame so far on disk (full)."""
        self.turns.release()
        if self.wal is not None:
            self.wal.sync()

    def close(self) -> None:
        self.turns.close()
        if self.wal is not None:
            self.wal.close()


class CommitTurns:
    def __init__(self, db_path: Path) -> None:
        self.path = Path(f"{db_path}.commit")
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        self.held = False

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Hold the turn for the block (or until `release`); StorageError after WAIT_SECONDS
        without it."""
        deadline = time.monotonic() + WAIT_SECONDS
        pause = FIRST_PAUSE
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StorageError("database is locked: another worker has held its "
                                       f"turn to commit for {WAIT_SECONDS:.0f} s") from None
                time.sleep(pause)
                pause = min(pause * 2, LONGEST_PAUSE)
        self.held = True
        try:
            yield
        finally:
            self.release()

    def release(self) -> None:
        """End the turn early (a commit done, its fsync still to come); idempotent."""
        if self.held:
            self.held = False
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self.fd)


class WalSync:
    """fsync of `<db>-wal`, reopened when the file at the path is no longer the one open
    (SQLite deletes the WAL when the last connection closes; another process may make a new
    one)."""

    def __init__(self, db_path: Path) -> None:
        self.path = Path(f"{db_path}-wal")
        self.fd: int | None = None

    def sync(self) -> None:
        """Every WAL frame written so far is on disk when this returns; StorageError if the
        WAL cannot be opened or synced."""
        try:
            if self.fd is not None and os.fstat(self.fd).st_ino != os.stat(self.path).st_ino:
                self.close()
            if self.fd is None:
                self.fd = os.open(self.path, os.O_RDONLY)
            os.fsync(self.fd)
        except OSError as exc:
            self.close()
            raise StorageError(f"the commit was written but its WAL could not be synced: "
                               f"{exc}") from exc

    def close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)
