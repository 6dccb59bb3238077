"""A throwaway PostgreSQL cluster for the tests and the benchmarks: `initdb` and `pg_ctl` from
Debian's `postgresql` package, in a temporary directory, on a loopback port, as the
unprivileged `nobody` when the suite runs as root (PostgreSQL refuses to run as root)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SUPERUSER = "postgres"
PASSWORD = "pg-test-secret"


def find_binary(name: str) -> str | None:
    """`name` on PATH, else from the newest /usr/lib/postgresql/<version>/bin."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                        key=lambda path: int(Path(path).parts[-3]))
    return candidates[-1] if candidates else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_as() -> dict[str, Any]:
    """subprocess arguments that drop root to `nobody`; none when not root."""
    if os.geteuid() != 0:
        return {}
    user = pwd.getpwnam("nobody")
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


@dataclass
class Cluster:
    """One cluster: `start`, `stop`, `restart`, and `url(database)` for clients."""

    bindir: Path
    directory: Path  # (start_cluster makes it: in /dev/shm or the default temporary one)
    port: int = field(default_factory=free_port)
    settings: dict[str, str] = field(default_factory=dict)
    pid: int | None = None

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def url(self, database: str = "postgres", password: bool = True) -> str:
        secret = f":{PASSWORD}" if password else ""
        return f"postgresql://{SUPERUSER}{secret}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, check=check, capture_output=True, text=True, timeout=120,
                              cwd=self.directory, **run_as())

    def init(self) -> None:
        """initdb with a password for the superuser (scram-sha-256 over TCP)."""
        pwfile = self.directory / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        if os.geteuid() == 0:
            user = pwd.getpwnam("nobody")
            os.chown(self.directory, user.pw_uid, user.pw_gid)
            os.chown(pwfile, user.pw_uid, user.pw_gid)
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", SUPERUSER,
                  "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8",
                  "--locale=C.UTF-8" if has_c_utf8() else "--locale=C", "--no-sync")
        pwfile.unlink()
        options = {"listen_addresses": "'127.0.0.1'", "port": str(self.port),
                   "unix_socket_directories": "''", "max_connections": "200",
                   "shared_buffers": "128MB", **self.settings}
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
            for key, value in options.items():
                conf.write(f"{key} = {value}\n")

    def start(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l",
                  str(self.directory / "server.log"), "-w", "-t", "60", "start")
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])

    def stop(self, mode: str = "fast") -> None:
        if self.data.exists():
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w",
                      "stop", check=False)
        self.pid = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        path = self.directory / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)


def memory_directory(room: int = 8 << 30) -> str | None:
    """/dev/shm when it is a writable directory with `room` bytes free, else None (the
    default temporary directory)."""
    try:
        usage = shutil.disk_usage("/dev/shm")
    except OSError:
        return None
    return "/dev/shm" if usage.free >= room and os.access("/dev/shm", os.W_OK) else None


def has_c_utf8() -> bool:
    return any(Path(path).exists()
               for path in ("/usr/lib/locale/C.utf8", "/usr/lib/locale/C.UTF-8"))


def start_cluster(settings: dict[str, str] | None = None,
                  in_memory: bool = False) -> Cluster | None:
    """A started cluster, or None when PostgreSQL is not installed. `in_memory`: its files in
    /dev/shm when that has room (the suite's cluster, which runs with fsync off anyway: its
    hundreds of databases are made, written and removed at memory speed)."""
    bindir = find_binary("initdb")
    if bindir is None or find_binary("pg_ctl") is None:
        return None
    directory = tempfile.mkdtemp(prefix="mi-pg-", dir=memory_directory() if in_memory else None)
    cluster = Cluster(Path(bindir).resolve().parent, Path(directory), settings=settings or {})
    try:
        cluster.init()
        cluster.start()
    except BaseException:
        cluster.destroy()
        raise
    return cluster


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)
