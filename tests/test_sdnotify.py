"""Running under systemd: the sd_notify messages (READY=1 only once the port serves, from the
main process, also with --workers), the shipped unit (`systemd-analyze verify`), the README's
environment file, and log lines for the journal."""

from __future__ import annotations

import logging
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from metrics_ingest.config import OPTIONS, load_settings
from metrics_ingest.logs import AccessLogSink, JournalFormatter
from metrics_ingest.sdnotify import CREDENTIALS, Notifier, ReadinessRelay, decode, encode
from metrics_ingest.serve import SHUTDOWN_GRACE_SECONDS
from tests.conftest import REPO, TOKEN, free_port, required_tool

UNIT = REPO / "deploy" / "systemd" / "metrics-ingest.service"


class Listener:
    """What systemd does with NOTIFY_SOCKET: a datagram socket that learns each sender's pid."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)

    def receive(self, timeout: float) -> tuple[int, dict[str, str]] | None:
        """The next message and its sender's pid, or None after `timeout` seconds."""
        readable, _, _ = select.select([self.sock], [], [], timeout)
        if not readable:
            return None
        message, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(CREDENTIALS.size))
        pid = next(CREDENTIALS.unpack(data[:CREDENTIALS.size])[0]
                   for level, kind, data in ancillary
                   if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS)
        return int(pid), decode(message)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(params=["path", "abstract"])
def listener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Listener]:
    address = (str(tmp_path / "notify") if request.param == "path"
               else f"@metrics-ingest-test/{os.getpid()}/{tmp_path.name}")
    listening = Listener(address)
    yield listening
    listening.close()


# -- the protocol ---------------------------------------------------------------------------


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = Notifier.from_environ({})
    assert notifier.address is None
    assert notifier.send(READY="1") is False


def test_a_message_reaches_the_socket(listener: Listener) -> None:
    Notifier.from_environ({"NOTIFY_SOCKET": listener.address}).ready("listening\non 1.2.3.4:5")
    received = listener.receive(5)
    assert received == (os.getpid(), {"READY": "1", "STATUS": "listening on 1.2.3.4:5"})


def test_a_socket_nobody_listens_on_is_logged_not_raised(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert Notifier(str(tmp_path / "nobody")).send(READY="1") is False
    assert "could not notify" in caplog.text
    assert Notifier("vsock:2:1234").address is None  # not a kind this module speaks


def test_the_relay_says_ready_once_every_worker_has(listener: Listener) -> None:
    relay = ReadinessRelay(Notifier(listener.address), 2, "2 workers listening")
    try:
        first = Notifier(relay.address, {"WORKER": "1"})
        first.ready("worker 1")
        first.ready("worker 1 again")
        first.send(STATUS="busy")
        Notifier(relay.address, {"WORKER": "2"}).stopping("not ready, stopping")
        assert listener.receive(0.3) is None
        Notifier(relay.address, {"WORKER": "2"}).ready("worker 2")
        assert listener.receive(5) == (os.getpid(), {"READY": "1",
                                                     "STATUS": "2 workers listening"})
        Notifier(relay.address, {"WORKER": "2"}).ready("worker 2, restarted")
        assert listener.receive(0.3) is None  # READY=1 once
    finally:
        relay.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="sending as another user needs root")
def test_the_relay_ignores_other_users(listener: Listener) -> None:
    # An interpreter that user "nobody" may run (this one may live under /root).
    python = shutil.which("python3", path="/usr/bin:/bin")
    if python is None:
        pytest.skip("no system python3 to run as another user")
    relay = ReadinessRelay(Notifier(listener.address), 1, "ready")
    try:
        name = relay.address[1:]
        script = ("import socket; s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); "
                  f"s.connect('\\0{name}'); s.send(b'READY=1\\nWORKER=1')")
        subprocess.run([python, "-c", script], user=65534, check=True, timeout=30, cwd="/")
        assert listener.receive(0.3) is None
        Notifier(relay.address, {"WORKER": "1"}).ready("mine")
        assert listener.receive(5) is not None
    finally:
        relay.close()


def test_encoding_round_trips() -> None:
    fields = {"READY": "1", "STATUS": "a=b c"}
    assert decode(encode(fields)) == fields


# -- the real CLI under a NOTIFY_SOCKET -----------------------------------------------------


def serves(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
        return bool(response.status == 200)


def start(tmp_path: Path, listener: Listener, port: int, *args: str,
          env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], Path]:
    log = tmp_path / f"serve-{port}.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "metrics_ingest", "serve", "--port", str(port),
             "--db", str(tmp_path / "data" / "metrics.db"), *args],
            cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "METRICS_AUTH_TOKEN": TOKEN, "NOTIFY_SOCKET": listener.address,
                 **(env or {})})
    return process, log


def next_message(listener: Listener, process: subprocess.Popen[str], log: Path,
                 timeout: float = 30) -> tuple[int, dict[str, str]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        received = listener.receive(0.1)
        if received is not None:
            return received
        assert process.poll() is None, f"serve exited early:\n{log.read_text()}"
    raise AssertionError(f"no notification within {timeout} s:\n{log.read_text()}")


@pytest.mark.slow
def test_serve_says_ready_once_the_port_serves_and_stopping_at_sigterm(
        tmp_path: Path, listener: Listener) -> None:
    port = free_port()
    log = tmp_path / f"serve-{port}.log"
    log.touch()
    # systemd's JOURNAL_STREAM names stderr's device and inode: log lines for the journal.
    stat = log.stat()
    process, log = start(tmp_path, listener, port,
                         env={"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"})
    try:
        pid, fields = next_message(listener, process, log)
        # The first message is READY=1, from the service's own (main) process, and the port
        # already answers when it arrives.
        assert (pid, fields) == (process.pid, {"READY": "1",
                                               "STATUS": f"listening on 127.0.0.1:{port}"})
        assert serves(port)
        process.send_signal(signal.SIGTERM)
        pid, fields = next_message(listener, process, log)
        assert (pid, fields) == (process.pid, {"STOPPING": "1", "STATUS": "draining the queue"})
        assert process.wait(SHUTDOWN_GRACE_SECONDS) == 0
        assert listener.receive(0) is None
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    lines = log.read_text().splitlines()
    assert lines, "no log lines"
    assert all(re.match(r"<[2-7]>[A-Z]+ metrics_ingest\.", line) for line in lines), lines
    assert "<6>INFO metrics_ingest.cli: listening on" in log.read_text()


@pytest.mark.slow
def test_no_ready_when_the_port_cannot_be_bound(tmp_path: Path, listener: Listener) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        process, log = start(tmp_path, listener, taken.getsockname()[1])
        assert process.wait(60) != 0
    assert listener.receive(0) is None, log.read_text()


@pytest.mark.slow
def test_workers_ready_once_every_worker_serves(tmp_path: Path, listener: Listener) -> None:
    port = free_port()
    process, log = start(tmp_path, listener, port, "--workers", "2")
    try:
        pid, fields = next_message(listener, process, log, timeout=60)
        assert (pid, fields) == (process.pid, {
            "READY": "1", "STATUS": f"2 workers listening on 127.0.0.1:{port}"})
        # Each worker logs that it listens before it tells the supervisor.
        text = log.read_text()
        assert f"worker 1: listening on http://127.0.0.1:{port}" in text
        assert f"worker 2: listening on http://127.0.0.1:{port}" in text
        assert serves(port)
        process.send_signal(signal.SIGTERM)
        pid, fields = next_message(listener, process, log)
        assert (pid, fields) == (process.pid, {"STOPPING": "1", "STATUS": "stopping 2 workers"})
        assert process.wait(SHUTDOWN_GRACE_SECONDS + 10) == 0
        # Nothing else reached systemd's socket: the workers told the supervisor only.
        assert listener.receive(0) is None
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


# -- the unit and its environment file ------------------------------------------------------


def unit_entries(text: str) -> dict[str, list[str]]:
    """`Section.Key` -> values in order (systemd allows a key more than once)."""
    entries: dict[str, list[str]] = {}
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        entries.setdefault(f"{section}.{key}", []).append(value)
    return entries


def test_the_unit_is_what_the_issue_asks_for() -> None:
    entries = unit_entries(UNIT.read_text())

    def one(key: str) -> str:
        assert len(entries.get(key, [])) == 1, key
        return entries[key][0]

    assert one("Service.Type") == "notify"
    assert one("Service.NotifyAccess") == "main"
    assert one("Service.ExecStart") == "/usr/local/bin/metrics-ingest serve"
    assert one("Service.ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one("Service.Restart") == "on-failure"
    assert one("Service.User") == "metrics-ingest"
    assert one("Service.StateDirectory") == "metrics-ingest"
    assert one("Service.EnvironmentFile") == "-/etc/metrics-ingest/env"
    assert one("Service.Environment") == "METRICS_DB_PATH=/var/lib/metrics-ingest/metrics.db"
    for key, value in {"ProtectSystem": "strict", "NoNewPrivileges": "yes",
                       "PrivateTmp": "yes", "ProtectHome": "yes"}.items():
        assert one(f"Service.{key}") == value, key
    assert one("Service.RestrictAddressFamilies") == "AF_UNIX AF_INET AF_INET6"
    # systemd waits longer than the service's own stop: the workers' drain, then the kill.
    assert int(one("Service.TimeoutStopSec")) > SHUTDOWN_GRACE_SECONDS + 5
    assert one("Service.KillMode") == "mixed"  # SIGTERM to the supervisor, which passes it on


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    analyze = required_tool("systemd-analyze", "systemd")
    # verify insists that ExecStart's binary exists: this venv's entry point stands in for
    # /usr/local/bin/metrics-ingest.
    binary = Path(sys.executable).with_name("metrics-ingest")
    assert binary.exists()
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace("/usr/local/bin/metrics-ingest", str(binary)))
    result = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True,
                            timeout=60)
    print(f"systemd-analyze verify: exit {result.returncode} {result.stdout}{result.stderr}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "metrics-ingest.service" not in result.stdout + result.stderr  # no warning about it
    # The exposure score README quotes ("1.4, OK"): below 2 is what systemd calls OK.
    security = subprocess.run([analyze, "security", "--offline=true", str(copy)],
                              capture_output=True, text=True, timeout=60)
    score = re.search(r"Overall exposure level for metrics-ingest\.service: ([\d.]+)",
                      security.stdout)
    assert score is not None, security.stdout + security.stderr
    print(f"systemd-analyze security: exposure {score.group(1)}")
    assert float(score.group(1)) < 2.0


def test_the_readme_environment_file_loads_as_settings() -> None:
    readme = (REPO / "README.md").read_text()
    block = re.search(r"```sh\n# /etc/metrics-ingest/env\n(.*?)```", readme, re.DOTALL)
    assert block is not None, "README shows /etc/metrics-ingest/env"
    names = {option.env for option in OPTIONS}
    environ: dict[str, str] = {}
    for line in block.group(1).splitlines():
        setting = re.fullmatch(r"#? ?([A-Z_]+)=(\S+).*", line)
        if setting is None:
            continue
        assert setting.group(1) in names, line
        if not line.startswith("#"):
            environ[setting.group(1)] = setting.group(2)
    assert environ, "the block sets something"
    load_settings(environ)  # raises ConfigError naming a bad value


# -- logs for the journal -------------------------------------------------------------------


def test_journal_lines_carry_the_priority_and_no_time() -> None:
    record = logging.LogRecord("metrics_ingest.cli", logging.WARNING, __file__, 1,
                               "first\nsecond", None, None)
    # Each line its own journal entry, at the record's priority (a traceback's too).
    assert JournalFormatter().format(record) == ("<4>WARNING metrics_ingest.cli: first\n"
                                                 "<4>second")
    lines = AccessLogSink("journal", fd=1)._journal_lines(
        [(0.0, "POST", "/ingest", 200, 0.002, "")])
    assert lines == ["<6>INFO metrics_ingest.access: POST /ingest 200 2.0ms\n"]


def test_journal_format_is_the_default_only_when_stderr_is_the_journal() -> None:
    stat = os.fstat(2)
    journal = {"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"}
    assert load_settings(journal).log_format == "journal"
    assert load_settings({**journal, "METRICS_LOG_FORMAT": "text"}).log_format == "text"
    # Inherited by a process whose stderr goes elsewhere: not the journal.
    assert load_settings({"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino + 1}"}
                         ).log_format == "text"
    assert load_settings({"JOURNAL_STREAM": "garbage"}).log_format == "text"
    assert load_settings({}).log_format == "text"
