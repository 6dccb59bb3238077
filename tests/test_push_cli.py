"""`metrics-ingest push` against the live service: samples and text files, a server that is
down for the first run (spooled, then sent first, oldest first), refusals, stdlib only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from metrics_ingest import push
from tests.conftest import REPO, TOKEN, Service, free_port, rows

pytestmark = pytest.mark.slow
PUSH_SCRIPT = REPO / "metrics_ingest" / "push.py"


def run_push(*args: str, url: str, spool: Path, stdin: str | None = None,
             stdlib_only: bool = True) -> subprocess.CompletedProcess[str]:
    """The pusher as a bare login node runs it: the single file, no site-packages (-S -I)."""
    command = ([sys.executable, "-I", "-S", str(PUSH_SCRIPT)] if stdlib_only
               else [sys.executable, "-m", "metrics_ingest", "push"])
    env = {"PATH": os.environ.get("PATH", ""), "METRICS_TOKEN": TOKEN}
    return subprocess.run([*command, "--url", url, "--spool", str(spool), *args], input=stdin,
                          capture_output=True, text=True, timeout=60, env=env)


def test_samples_with_labels(tmp_path: Path, service_factory: Callable[..., Service]) -> None:
    service = service_factory()
    result = run_push("--source", "hpc", "--label", "cluster=alpha", "slurm_pending_jobs=42",
                      "slurm_running_jobs=10.5", url=service.url, spool=tmp_path / "spool")
    assert result.returncode == 0, result.stderr
    assert rows(service.db_path, "SELECT source, metric_name, metric_value, labels FROM metrics"
                " ORDER BY metric_name") == [
        ("hpc", "slurm_pending_jobs", 42.0, '{"cluster":"alpha"}'),
        ("hpc", "slurm_running_jobs", 10.5, '{"cluster":"alpha"}')]


def test_text_file_from_stdin(tmp_path: Path, service_factory: Callable[..., Service]) -> None:
    service = service_factory()
    text = "# TYPE node_load1 gauge\nnode_load1 0.5\nnode_users{tty=\"pts/0\"} 2\n"
    result = run_push("--source", "login01", "--label", "site=a/b", "--file", "-",
                      url=service.url, spool=tmp_path / "spool", stdin=text, stdlib_only=False)
    assert result.returncode == 0, result.stderr
    assert rows(service.db_path, "SELECT source, metric_name, metric_value, labels FROM metrics"
                " ORDER BY metric_name") == [
        ("login01", "node_load1", 0.5, '{"instance":"","job":"login01","site":"a/b"}'),
        ("login01", "node_users", 2.0,
         '{"instance":"","job":"login01","site":"a/b","tty":"pts/0"}')]


def test_remote_write_from_the_stdlib(tmp_path: Path,
                                      service_factory: Callable[..., Service]) -> None:
    """--remote-write encodes a WriteRequest and a snappy block with the standard library."""
    service = service_factory()
    result = run_push("--source", "cluster-a", "--label", "partition=gpu", "--remote-write",
                      "slurm_pending_jobs=42", "slurm_running_jobs=7", url=service.url,
                      spool=tmp_path / "spool")
    assert result.returncode == 0, result.stderr
    assert rows(service.db_path, "SELECT source, metric_name, metric_value, labels FROM metrics"
                " ORDER BY metric_name") == [
        ("cluster-a", "slurm_pending_jobs", 42.0, '{"partition":"gpu"}'),
        ("cluster-a", "slurm_running_jobs", 7.0, '{"partition":"gpu"}')]
    big = push.snappy_literals(bytes(range(256)) * 600)
    import cramjam

    assert bytes(cramjam.snappy.decompress_raw(big)) == bytes(range(256)) * 600


def test_server_down_then_back(tmp_path: Path, service_factory: Callable[..., Service]) -> None:
    spool = tmp_path / "spool"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # A metric per run: runs within one second would otherwise replace each other's sample.
    first = run_push("--source", "hpc", "--timeout", "1", "run_first=1", url=url, spool=spool)
    assert first.returncode == push.EXIT_SPOOLED, first.stderr
    second = run_push("--source", "hpc", "--timeout", "1", "run_second=2", url=url, spool=spool)
    assert second.returncode == push.EXIT_SPOOLED
    kept = sorted(spool.glob("*.json"))
    assert len(kept) == 2
    assert TOKEN not in "".join(path.read_text() for path in kept)  # tokens are not spooled
    assert oct(kept[0].stat().st_mode & 0o777) == "0o600"
    first_time = json.loads(kept[0].read_text())["created"]

    service = service_factory(port=port)
    third = run_push("--source", "hpc", "run_third=3", url=url, spool=spool)
    assert third.returncode == 0, third.stderr
    assert "sent 2 spooled push(es)" in third.stderr
    assert list(spool.glob("*.json")) == []
    stored = rows(service.db_path, "SELECT timestamp, metric_name, metric_value FROM metrics"
                  " ORDER BY metric_value")
    assert [(name, value) for _, name, value in stored] == [
        ("run_first", 1.0), ("run_second", 2.0), ("run_third", 3.0)]
    assert stored[0][0] == int(first_time)  # the value keeps the time it was measured


def test_refused_push_is_not_spooled(tmp_path: Path,
                                     service_factory: Callable[..., Service]) -> None:
    service = service_factory()
    env_token = {"METRICS_TOKEN": "wrong"}
    result = subprocess.run(
        [sys.executable, "-I", "-S", str(PUSH_SCRIPT), "--url", service.url, "--spool",
         str(tmp_path / "spool"), "--source", "hpc", "x=1"],
        capture_output=True, text=True, timeout=60, env={**env_token, "PATH": ""})
    assert result.returncode == push.EXIT_REJECTED
    assert "HTTP 401" in result.stderr
    assert list((tmp_path / "spool").glob("*.json")) == []


def test_bad_arguments(tmp_path: Path) -> None:
    for args in (["--source", "hpc"], ["--source", "hpc", "x=abc"], ["--source", "hpc", "9x=1"],
                 ["--source", "hpc", "--file", "f", "x=1"]):
        result = run_push(*args, url="http://127.0.0.1:9", spool=tmp_path / "spool")
        assert result.returncode != 0
        assert result.stderr.startswith(("metrics-ingest push:", "usage:"))
