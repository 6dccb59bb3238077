"""A real Prometheus against the live service: it scrapes /metrics (asking for OpenMetrics)
without errors, and its remote_write lands in the database."""

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
    write_relabel_configs:  # only Prometheus' own series: do not loop ours back in
      - {source_labels: [job], regex: prometheus, action: keep}
"""


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
    config = CONFIG.replace("INGEST_PORT", port).replace("TOKEN_VALUE", TOKEN)
    with running_prometheus(tmp_path / "prometheus", config) as prometheus:
        # The scrape: OpenMetrics negotiated, no error, our samples with source and labels.
        [up] = prometheus.wait_for('up{job="metrics-ingest"} == 1')
        assert up["value"][1] == "1"
        [pending] = prometheus.wait_for('slurm_pending_jobs{source="hpc"}')
        assert pending["metric"]["partition"] == "gpu"
        assert pending["value"][1] == "42"
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
        print(f"prometheus: up={up['value'][1]}, slurm_pending_jobs{pending['metric']} = "
              f"{pending['value'][1]}, scraped {scraped['value'][1]} samples; remote_write "
              f"up sample {up_sample}")
