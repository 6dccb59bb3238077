"""The README stays true to the code: every setting and every endpoint is documented."""

from __future__ import annotations

import dataclasses
import re

from metrics_ingest.app import ENDPOINTS, create_app
from metrics_ingest.config import OPTIONS, Settings
from tests.conftest import REPO

README = (REPO / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    fields = {field.name for field in dataclasses.fields(Settings)}
    # db_url is set by --db / METRICS_DB_PATH when the value is a postgresql:// URL.
    assert fields - {"db_url"} == {option.field for option in OPTIONS}
    for option in OPTIONS:
        assert f"`{option.env}`" in README, option.env
        assert f"`{option.flag}`" in README, option.flag


def test_every_endpoint_has_a_curl_example() -> None:
    app = create_app(Settings(auth_tokens=("x",)))
    paths = {resource.canonical for resource in app.router.resources()} - {"/{path}"}
    assert paths == {re.sub(r"\{(\w+):[^}]+\}", r"{\1}", spec.path) for spec in ENDPOINTS}
    # remote_write bodies are binary: its example sends one with `metrics-ingest push`.
    other_examples = {"/api/v1/write": "--remote-write",
                      "/api/v1/label/{name}/values": "8787/api/v1/label/source/values",
                      "/sources/{name}": "8787/sources/hpc"}
    for path in paths:
        example = path.replace("{grouping}", "job/")  # /metrics/job/<job>{/<label>/<value>}
        assert (f"127.0.0.1:8787{example}" in README
                or other_examples.get(path, "\0") in README), path


def test_every_self_metric_is_documented() -> None:
    from metrics_ingest.formats.exposition import render_telemetry
    from metrics_ingest.telemetry import Telemetry

    names = {line.split()[2] for line in render_telemetry(Telemetry(), 0, 0)
             if line.startswith("# TYPE")}
    for name in names:
        assert f"`{name}`" in README, name


def test_quick_start_is_two_commands() -> None:
    assert "make run" in README
    assert "make test" in README
