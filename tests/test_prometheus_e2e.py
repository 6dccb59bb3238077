"""A real Prometheus against the live service: it scrapes /metrics (asking for OpenMetrics)
with `honor_labels: true` without errors, finds Pushgateway-API series by their own `job`,
reports the pushed TYPE of each family, and its remote_write (with metadata) lands."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import TOKEN, Service, wait_until
from tests.prometheus_server import running_prometheus
from tests.test_cli import post

pytestmark = pytest.mark.slow

CONFIG = """
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: metrics-ingest
    honor_labels: true
    static_configs: [{targets: ["127.0.0.1:INGEST_PORT"]}]
  - job_name: prometheus
    static_configs: [{targets: ["127.0.0.1:{port}"]}]
remote_write:
  - url: http://127.0.0.1:INGEST_PORT/api/v1/write
    authorization: {type: Bearer, credentials: TOKEN_VALUE}
    queue_config: {batch_send_deadline: 1s, min_backoff: 100ms, max_backoff: 1s}
    metadata_config: {send: true, send_interval: 1s}
    write_relabel_configs:  # only Prometheus' own series: do not loop ours back in
      - {source_labels: [job], regex: prometheus, action: keep}
      - {source_labels: [source], regex: ".+", action: drop}
"""
EXPORTERS = Path(__file__).resolve().parent / "fixtures" / "exporters"
PUSHED_TYPES = {"go_gc_duration_seconds": "summary",
                "prometheus_http_request_duration_seconds": "histogram",
                "node_cpu_seconds_total": "counter", "nginx_connections_accepted": "counter",
                "go_goroutines": "gauge", "slurm_cpus_alloc": "gauge",
                "job_last_success_unixtime": "gauge"}


def put(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, data=body, method="PUT",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.status)


def get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_prometheus_scrapes_and_remote_writes(
    tmp_path: Path, service_factory: Callable[..., Service]
) -> None:
    service = service_factory()
    port = service.url.rsplit(":", 1)[1]
    status, _ = post(service.url, {"source": "hpc", "labels": {"partition": "gpu"},
                                   "metrics": {"slurm_pending_jobs": 42}})
    assert status == 200
    for path, body in (
            ("/metrics/job/node/instance/n1", (EXPORTERS / "node_exporter.prom").read_bytes()),
            ("/metrics/job/slurm", (EXPORTERS / "slurm_exporter.prom").read_bytes()),
            ("/metrics/job/nightly/instance/node07",
             b"# TYPE job_last_success_unixtime gauge\njob_last_success_unixtime 1.7e9\n")):
        assert put(service.url + path, body) == 200
    config = CONFIG.replace("INGEST_PORT", port).replace("TOKEN_VALUE", TOKEN)
    with running_prometheus(tmp_path / "prometheus", config) as prometheus:
        # The scrape: OpenMetrics negotiated, no error, our samples with source and labels.
        [up] = prometheus.wait_for('up{job="metrics-ingest"} == 1')
        assert up["value"][1] == "1"
        [pending] = prometheus.wait_for('slurm_pending_jobs{source="hpc"}')
        assert pending["metric"]["partition"] == "gpu"
        assert pending["value"][1] == "42"
        # Pushgateway-API series carry their own job and instance (honor_labels), as from a
        # Pushgateway: alerts on job_last_success_unixtime{job="nightly"} work unchanged.
        [nightly] = prometheus.wait_for('job_last_success_unixtime{job="nightly"}')
        assert nightly["metric"]["instance"] == "node07"
        [slurm] = prometheus.wait_for('slurm_cpus_alloc{job="slurm"}')
        assert "instance" not in slurm["metric"]  # instance="" kept the target's away
        buckets = prometheus.query('prometheus_http_request_duration_seconds_bucket'
                                   '{job="node",handler="/api/v1/query"}')
        assert len(buckets) == 10
        metadata = prometheus.metadata()
        for family, kind in PUSHED_TYPES.items():
            assert metadata[family][0]["type"] == kind, (family, metadata.get(family))
        [scraped] = prometheus.query('scrape_samples_scraped{job="metrics-ingest"}')
        assert float(scraped["value"][1]) > 20
        target = next(t for t in prometheus.targets()
                      if t["labels"]["job"] == "metrics-ingest")
        assert target["health"] == "up"
        assert target["lastError"] == ""
        # remote_write: Prometheus' own series arrive with job=prometheus as their source.

        def arrived() -> bool:
            answer = get_json(f"{service.url}/api/metrics?source=prometheus&metric=up")
            return isinstance(answer, list) and bool(answer)

        wait_until(arrived, 60, "remote_write samples in metrics-ingest")
        [up_sample] = get_json(f"{service.url}/api/metrics?source=prometheus&metric=up"
                               "&limit=1")  # type: ignore[misc]
        assert up_sample["metric_value"] == 1
        assert up_sample["labels"]["instance"] == prometheus.url.removeprefix("http://")
        text = urllib.request.urlopen(f"{service.url}/metrics", timeout=10).read().decode()
        assert 'metrics_ingest_requests_total{route="remote_write",code="204"}' in text

        # remote_write metadata: Prometheus' own families arrive with their types.
        def typed() -> bool:
            text = urllib.request.urlopen(f"{service.url}/metrics", timeout=10).read().decode()
            return "# TYPE prometheus_http_requests_total counter" in text

        wait_until(typed, 60, "remote_write metadata in metrics-ingest")
        print(f"prometheus: up={up['value'][1]}, slurm_pending_jobs{pending['metric']} = "
              f"{pending['value'][1]}, scraped {scraped['value'][1]} samples; remote_write "
              f"up sample {up_sample}")
