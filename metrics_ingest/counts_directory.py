"""The directory in which `serve --workers` workers keep their counts (worker_telemetry.py):
made by the supervisor in TMPDIR and locked (flock) for as long as it runs, removed as it
stops. One whose supervisor was killed (its lock free) is removed by the next supervisor
of the same user; a lock is a process's own, so this holds across PID namespaces too."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

log = logging.getLogger("metrics_ingest.supervisor")

PREFIX = "metrics-ingest-workers-"  # (then the supervisor's PID, for people)
LOCK = "supervisor.lock"
# A directory with no lock file yet is being made: left alone for this long.
MAKING_SECONDS = 60.0


class CountsDirectory:
    """A directory made and locked by this process; `remove` unlocks and removes it."""

    def __init__(self, path: Path, lock: int) -> None:
        self.path = path
        self.lock = lock

    @classmethod
    def make(cls) -> CountsDirectory | None:
        """Sweep abandoned directories, then make one; None (said in the log) when TMPDIR
        will not take one."""
        sweep()
        path = None
        where = os.environ.get("TMPDIR") or "the temporary directory"
        try:
            where = tempfile.gettempdir()  # (raises when no directory takes a file)
            path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
            # Locked under another name, then renamed: a sweep never finds the lock file
            # unlocked while it is being taken.
            making = path / f"{LOCK}.new"
            lock = os.open(making, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.replace(making, path / LOCK)
        except OSError as exc:
            if path is not None:
                shutil.rmtree(path, ignore_errors=True)
            log.warning("cannot make a directory for the workers' counts in %s: %s; each "
                        "worker's /metrics shows its own counts only", where, exc)
            return None
        return cls(path, lock)

    def remove(self) -> None:
        os.close(self.lock)
        shutil.rmtree(self.path, ignore_errors=True)


def sweep() -> None:
    """Remove this user's directories whose supervisor is gone."""
    try:
        found = list(Path(tempfile.gettempdir()).glob(f"{PREFIX}*"))
    except OSError:
        return
    for path in found:
        with contextlib.suppress(OSError):
            if (path.is_symlink() or not path.is_dir()
                    or path.stat().st_uid != os.getuid()):
                continue
            if abandoned(path):
                shutil.rmtree(path, ignore_errors=True)


def abandoned(path: Path) -> bool:
    try:
        lock = os.open(path / LOCK, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return time.time() - path.stat().st_mtime > MAKING_SECONDS
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # its supervisor holds it
    finally:
        os.close(lock)
    return True
