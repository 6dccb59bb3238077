"""Whose turn it is to commit, among `serve --workers N` on one SQLite file: an exclusive
flock on `<db>.commit`, taken around each write transaction. SQLite's own lock would do,
but a writer that finds it taken sleeps 1, 2, 5, 10... ms before trying again (its busy
handler); a released flock wakes the next worker at once."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from metrics_ingest.store import StorageError

WAIT_SECONDS = 5.0  # as SQLite's busy_timeout: then the write fails (503)
FIRST_PAUSE = 0.00005
LONGEST_PAUSE = 0.001


class CommitTurns:
    def __init__(self, db_path: Path) -> None:
        self.path = Path(f"{db_path}.commit")
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Hold the turn for the block; StorageError after WAIT_SECONDS without it."""
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
        try:
            yield
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self.fd)
