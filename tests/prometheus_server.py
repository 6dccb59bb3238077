"""A real Prometheus server (Debian's `prometheus`) on loopback for integration tests: started
over a temporary data directory, queried through its own HTTP API, stopped by PID."""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.conftest import free_port, required_tool, wait_until


def prometheus_binary() -> str:
    return required_tool("prometheus", "prometheus")


class Prometheus:
    def __init__(self, url: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.url = url
        self.process = process
        self.log = log

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector `promql` evaluates to now."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        with urllib.request.urlopen(url, timeout=10) as response:
            answer = json.loads(response.read())
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def wait_for(self, promql: str, seconds: float = 60) -> list[dict[str, Any]]:
        """Poll until `promql` returns something (with a deadline)."""
        found: list[dict[str, Any]] = []

        def present() -> bool:
            nonlocal found
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited:\n{self.log.read_text()[-3000:]}")
            found = self.query(promql)
            return bool(found)

        wait_until(present, seconds, f"prometheus to return {promql}")
        return found

    def metadata(self) -> dict[str, list[dict[str, str]]]:
        """/api/v1/metadata: each family's type, help and unit as Prometheus scraped them."""
        with urllib.request.urlopen(f"{self.url}/api/v1/metadata", timeout=10) as response:
            answer = json.loads(response.read())
        assert answer["status"] == "success", answer
        data: dict[str, list[dict[str, str]]] = answer["data"]
        return data

    def targets(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.url}/api/v1/targets", timeout=10) as response:
            active: list[dict[str, Any]] = json.loads(response.read())["data"]["activeTargets"]
            return active


@contextmanager
def running_prometheus(workdir: Path, config: str) -> Iterator[Prometheus]:
    """Start Prometheus with `config` (where `{port}` is replaced by its own port)."""
    binary = prometheus_binary()
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "prometheus.yml"
    config_path.write_text(config.replace("{port}", str(port)))
    log = workdir / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [binary, f"--config.file={config_path}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=out, stderr=subprocess.STDOUT)
    server = Prometheus(f"http://127.0.0.1:{port}", process, log)

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"prometheus exited:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    try:
        wait_until(ready, 60, "prometheus to be ready")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
