"""The docker-compose local stack, proven without a Docker engine: the compose file, the
Prometheus config and the Grafana provisioning validate; every dashboard query names metrics
the service really exports; and a real Prometheus running the stack's scrape config against a
live metrics-ingest sees the pushed values with their source and labels."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import AUTH, REPO, Service, promtool, required_tool
from tests.prometheus_server import running_prometheus
from tests.test_cli import post

Client = TestClient[web.Request, web.Application]
DEPLOY = REPO / "deploy"
COMPOSE = REPO / "docker-compose.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "metrics-ingest.json"
PROMQL_WORDS = {"sum", "by", "without", "rate", "irate", "increase", "histogram_quantile",
                "avg", "max", "min", "count", "on", "ignoring", "group_left", "offset"}


def test_compose_file_is_valid() -> None:
    result = subprocess.run([required_tool("docker-compose", "docker-compose"), "-f",
                             str(COMPOSE), "config", "-q"],
                            capture_output=True, text=True, timeout=60, cwd=REPO,
                            env={**os.environ, "METRICS_AUTH_TOKEN": ""})
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    default = {name for name, service in services.items() if "profiles" not in service}
    assert default == {"metrics-ingest", "prometheus", "grafana", "example-pusher"}
    assert services["metrics-ingest"]["stop_grace_period"] == "30s"


def test_compose_postgres_profile_is_valid() -> None:
    result = subprocess.run([required_tool("docker-compose", "docker-compose"), "-f",
                             str(COMPOSE), "--profile", "postgres", "config"],
                            capture_output=True, text=True, timeout=60, cwd=REPO,
                            env={**os.environ, "METRICS_AUTH_TOKEN": ""})
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert {"postgres", "ingest-a", "ingest-b", "example-pusher-pg"} <= set(services)
    for name in ("ingest-a", "ingest-b"):
        replica = services[name]
        assert replica["environment"]["METRICS_DB_PATH"].startswith("postgresql://")
        assert "ingest" in replica["networks"]["default"]["aliases"]
        assert replica["stop_grace_period"] in ("30s", 30, 30.0)


def test_prometheus_config_is_valid() -> None:
    result = subprocess.run([promtool(), "check", "config", str(DEPLOY / "prometheus" /
                                                             "prometheus.yml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_stops_and_checks_health() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "STOPSIGNAL SIGTERM" in dockerfile
    assert "/healthz" in dockerfile
    assert re.search(r"^USER metrics$", dockerfile, re.M)
    assert "COPY sql ./sql" in dockerfile


def datasource_uids() -> set[str]:
    found = set()
    for path in (DEPLOY / "grafana" / "provisioning" / "datasources").glob("*.yml"):
        for source in yaml.safe_load(path.read_text())["datasources"]:
            found.add(source["uid"])
    return found


def queries() -> list[tuple[str, str, str]]:
    """(panel title, datasource uid, expr) of every query of the dashboard."""
    dashboard = json.loads(DASHBOARD.read_text())
    found = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            uid = target.get("datasource", panel.get("datasource", {})).get("uid")
            found.append((panel["title"], uid, target["expr"]))
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, keywords or labels)."""
    text = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    text = re.sub(r"\b(?:by|without)\s*\([^)]*\)", "", text)  # grouping labels
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        if text[match.end():].lstrip().startswith("("):
            continue  # a function call
        names.add(match.group())
    return names - PROMQL_WORDS


def test_metric_names_of_a_query() -> None:
    assert metric_names("histogram_quantile(0.99, sum by (le) (rate(x_bucket{a=\"b\"}[5m])))"
                        ) == {"x_bucket"}
    assert metric_names("sum by (source) (slurm_pending_jobs)") == {"slurm_pending_jobs"}


def test_grafana_provisioning_parses_and_points_at_prometheus() -> None:
    uids = datasource_uids()
    assert uids == {"prometheus", "metrics-ingest"}
    providers = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" /
                                "metrics-ingest.yml").read_text())["providers"]
    grafana = yaml.safe_load(COMPOSE.read_text())["services"]["grafana"]
    mounted = {volume.split(":")[1] for volume in grafana["volumes"]}
    assert {provider["options"]["path"] for provider in providers} <= mounted
    titles = [title for title, _, _ in queries()]
    assert any("Pending" in title for title in titles)
    for title, uid, _ in queries():
        assert uid in uids, title


def test_grafana_queries_metrics_ingest_itself() -> None:
    """The second data source is the service's own PromQL API, at its compose address."""
    path = DEPLOY / "grafana" / "provisioning" / "datasources" / "metrics-ingest.yml"
    (source,) = yaml.safe_load(path.read_text())["datasources"]
    assert source["type"] == "prometheus"
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    host, port = source["url"].removeprefix("http://").split(":")
    assert host in services
    assert port == "8787"


async def test_every_dashboard_metric_is_really_exported(client: Client) -> None:
    # What the stack's example pusher sends, and one rejection so every family has samples.
    pusher = yaml.safe_load(COMPOSE.read_text())["services"]["example-pusher"]["command"][0]
    pushed = set(re.findall(r"([a-z_]+)=\$\$\(\(", pusher))
    assert set(pushed) == {"slurm_pending_jobs", "slurm_running_jobs"}
    push = {"source": "hpc-demo", "labels": {"cluster": "demo", "partition": "batch"},
            "metrics": dict.fromkeys(pushed, 1)}
    assert (await client.post("/ingest", json=push, headers=AUTH)).status == 200
    assert (await client.post("/ingest", json={}, headers=AUTH)).status == 400
    text = await (await client.get("/metrics")).text()
    exported = {sample.name for family in text_string_to_metric_families(text)
                for sample in family.samples}
    for title, _, expr in queries():
        missing = metric_names(expr) - exported
        assert not missing, f"panel {title!r} queries {missing}, which are not exported"


@pytest.mark.slow
def test_stack_prometheus_sees_the_pushed_values(
    tmp_path: Path, service_factory: Callable[..., Service]
) -> None:
    service = service_factory()
    for value in (12, 17):
        status, _ = post(service.url, {"source": "hpc-demo",
                                       "labels": {"cluster": "demo", "partition": "batch"},
                                       "metrics": {"slurm_pending_jobs": value,
                                                   "slurm_running_jobs": 140}})
        assert status == 200
    config: dict[str, Any] = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    # The stack's own config, with the target rewritten to this test's server.
    job = config["scrape_configs"][0]
    config["scrape_configs"] = [job]
    job["static_configs"] = [{"targets": [service.url.removeprefix("http://")]}]
    with running_prometheus(tmp_path / "prometheus", yaml.safe_dump(config)) as prometheus:
        [up] = prometheus.wait_for('up{job="metrics-ingest"} == 1', seconds=90)
        [pending] = prometheus.wait_for('slurm_pending_jobs{source="hpc-demo"}', seconds=90)
        [running] = prometheus.query('slurm_running_jobs{source="hpc-demo"}')
    assert up["value"][1] == "1"
    assert pending["value"][1] == "17"
    assert pending["metric"]["cluster"] == "demo"
    assert pending["metric"]["partition"] == "batch"
    assert running["value"][1] == "140"
    print(f"stack prometheus: up={up['value'][1]}; {pending['metric']} = {pending['value'][1]};"
          f" slurm_running_jobs = {running['value'][1]}")
