"""The README's examples, run as printed against a live server (see README "Development").

Every `sh` block runs in order, with `bash -euo pipefail`, from the server's working
directory; the comment lines right after a command are its expected output. `cron` lines run
their command, `python` blocks run, `toml` and `yaml` blocks must parse. A block preceded by
`<!-- not tested: why -->` is skipped.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
import yaml

from tests.conftest import REPO, PostgresServer, free_port, start_service

pytestmark = pytest.mark.slow

FENCE_RE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
SKIP_RE = re.compile(r"<!-- not tested: [^>]+-->\n$")
LONG_NUMBER_RE = re.compile(r"\d{10,}(?:\\\.\d+)?")
# Slurm's squeue, as a cron example calls it: three jobs in any state asked about.
SQUEUE_STUB = "#!/bin/sh\nprintf 'job1\\njob2\\njob3\\n'\n"


@dataclass
class Block:
    language: str
    text: str
    line: int  # where it starts in README.md
    skipped: bool

    def expected_output(self) -> list[str]:
        """Comment lines that follow a command (or another such line) without a blank."""
        expected: list[str] = []
        after_command = False
        for line in self.text.splitlines():
            if not line.strip():
                after_command = False
            elif line.startswith("#"):
                if after_command:
                    expected.append(line[2:] if line.startswith("# ") else line[1:])
            else:
                after_command = True
        return expected


def readme_blocks() -> list[Block]:
    text = (REPO / "README.md").read_text()
    return [Block(match.group(1), match.group(2), text.count("\n", 0, match.start()) + 1,
                  bool(SKIP_RE.search(text[:match.start()])))
            for match in FENCE_RE.finditer(text)]


def pattern(expected: str) -> re.Pattern[str]:
    escaped = re.escape(expected).replace(re.escape("..."), ".*")
    return re.compile(LONG_NUMBER_RE.sub(r"\\d+(?:\\.\\d+)?", escaped))


@dataclass
class Shell:
    """Where the examples run: the server's directory, its URL, the token, the stubs."""

    cwd: Path
    url: str
    token: str
    env: dict[str, str] = field(default_factory=dict)
    postgres_port: int = 5432

    def localise(self, text: str) -> str:
        """The README's addresses as this test's: its server, its PostgreSQL cluster."""
        return (text.replace("https://metrics.example.org", self.url)
                .replace("http://127.0.0.1:8787", self.url)
                .replace("http://localhost:8787", self.url)
                .replace("db.example:5432", f"127.0.0.1:{self.postgres_port}")
                .replace("-h db.example -p 5432", f"-h 127.0.0.1 -p {self.postgres_port}"))

    def run(self, command: list[str], stdin: str | None = None,
            extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, cwd=self.cwd, input=stdin, capture_output=True,
                              text=True, timeout=60, env={**self.env, **(extra or {})})


def run_sh(shell: Shell, block: Block) -> None:
    result = shell.run(["bash", "-euo", "pipefail", "-c", shell.localise(block.text)])
    where = f"README.md line {block.line}"
    assert result.returncode == 0, f"{where}: exit {result.returncode}\n{result.stderr}"
    expected = block.expected_output()
    if expected:
        got = result.stdout.replace(f"127.0.0.1:{shell.postgres_port}", "db.example:5432"
                                    ).splitlines()
        assert len(got) == len(expected), f"{where}: printed\n{result.stdout}"
        for line, want in zip(got, expected, strict=True):
            assert pattern(want).fullmatch(line), f"{where}: {line!r} is not {want!r}"


def run_cron(shell: Shell, block: Block) -> None:
    variables: dict[str, str] = {}
    for line in block.text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        assignment = re.fullmatch(r"([A-Z_]+)=(.*)", line)
        if assignment:
            variables[assignment.group(1)] = shell.localise(assignment.group(2))
            continue
        command = line.split(None, 5)[5]
        # The crontab's token placeholder stands for the real one.
        extra = {**variables, "METRICS_TOKEN": shell.token}
        result = shell.run(["sh", "-c", command], extra=extra)
        assert result.returncode == 0, f"README.md line {block.line}: {command}\n" \
                                       f"{result.stderr}"


def run_python(shell: Shell, block: Block) -> None:
    result = shell.run([sys.executable, "-c", shell.localise(block.text)])
    assert result.returncode == 0, f"README.md line {block.line}:\n{result.stderr}"


RUNNERS: dict[str, Callable[[Shell, Block], None]] = {
    "sh": run_sh, "cron": run_cron, "python": run_python,
    "toml": lambda shell, block: tomllib.loads(block.text) and None,
    "yaml": lambda shell, block: yaml.safe_load(block.text) and None,
}


def test_every_block_has_a_language() -> None:
    for block in readme_blocks():
        assert block.language in RUNNERS, f"README.md line {block.line}: ```{block.language}"


def test_readme_examples_run_as_printed(tmp_path: Path, postgres: PostgresServer) -> None:
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "squeue").write_text(SQUEUE_STUB)
    (stubs / "squeue").chmod(0o755)
    workdir = tmp_path / "work"
    workdir.mkdir()
    port = free_port()
    # Like the quick start: no METRICS_AUTH_TOKEN, so serve makes data/auth-token.
    env = {key: value for key, value in os.environ.items() if not key.startswith("METRICS_")}
    # The admin token the deletion example uses (README "Tenants").
    admin = "readme-admin-token"
    service = start_service(workdir, env={"METRICS_AUTH_TOKEN": "", "METRICS_ADMIN_TOKEN": admin},
                            port=port,
                            args=("--db", "data/metrics.db"), clean_env=env, cwd=workdir)
    try:
        token = (workdir / "data" / "auth-token").read_text().strip()
        path = f"{stubs}:{Path(sys.executable).parent}:{env.get('PATH', '')}"
        # The README's PostgreSQL role, in the suite's cluster (its password is the README's).
        with psycopg.connect(postgres.cluster.url(), autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS metrics")
            conn.execute("DROP ROLE IF EXISTS metrics")
            conn.execute("CREATE ROLE metrics LOGIN CREATEDB PASSWORD 'change-me'")
        shell = Shell(workdir, service.url, token,
                      {**env, "PATH": path, "TOKEN": token, "METRICS_TOKEN": token,
                       "ADMIN_TOKEN": admin,
                       "HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "state")},
                      postgres.cluster.port)
        ran = 0
        for block in readme_blocks():
            if block.skipped:
                continue
            RUNNERS[block.language](shell, block)
            ran += 1
        assert ran >= 15
        print(f"README: {ran} blocks run as printed against {service.url}")
    finally:
        service.process.terminate()
        service.process.wait(15)
