"""Scoped tokens over the real CLI server: a token writes only its sources in every push
format, is held to its rate, and the tokens file is re-read (SIGHUP, or a change to it)
keeping the last good one; and HTTPS with a certificate made here, for curl and a real
Prometheus."""

from __future__ import annotations

import base64
import hashlib
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

from bench.encode import snappy, write_request
from metrics_ingest.tls import is_loopback
from tests.conftest import TOKEN, Service, rows, start_service, wait_until
from tests.prometheus_server import running_prometheus

ALPHA = "alpha-token-0123456789"
BETA = "beta-token-0123456789"
SLOW = "slow-token-0123456789"
ADMIN = "admin-token-0123456789"


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


TOKENS = f'''
[[token]]
name = "cluster-alpha"
sha256 = "{sha(ALPHA)}"
roles = ["push"]
sources = ["alpha", "alpha-*"]

[[token]]
name = "cluster-beta"
sha256 = "{sha(BETA)}"
sources = ["beta"]

[[token]]
name = "slow"
sha256 = "{sha(SLOW)}"
rate = 2

[[token]]
name = "ops"
token = "{ADMIN}"
roles = ["admin", "read"]
'''


def request(url: str, token: str | None, body: bytes | None = None, method: str = "POST",
            headers: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
    all_headers = dict(headers or {})
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    call = urllib.request.Request(url, data=body, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(call, timeout=10) as answer:
            return answer.status, answer.read().decode(), dict(answer.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(), dict(error.headers)


def ingest(service: Service, token: str, source: str) -> tuple[int, str, dict[str, str]]:
    body = json.dumps({"source": source, "metrics": {"load": 1}}).encode()
    return request(service.url + "/ingest", token, body,
                   headers={"Content-Type": "application/json"})


def tokens_file(tmp_path: Path, text: str = TOKENS) -> Path:
    path = tmp_path / "tokens.toml"
    path.write_text(text)
    path.chmod(0o600)
    return path


def stored_sources(service: Service) -> set[str]:
    return {row[0] for row in rows(service.db_path, "SELECT DISTINCT source FROM series")}


def test_a_scoped_token_writes_its_sources_in_every_format(
        tmp_path: Path, service_factory: Callable[..., Service]) -> None:
    service = service_factory(env={"METRICS_TOKENS_FILE": str(tokens_file(tmp_path))})
    # JSON
    assert ingest(service, ALPHA, "alpha")[0] == 200
    assert ingest(service, ALPHA, "alpha-login")[0] == 200
    status, body, _ = ingest(service, ALPHA, "beta")
    assert status == 403
    assert "'cluster-alpha' may not write source 'beta'" in json.loads(body)["error"]
    # The Pushgateway API: the job is the source.
    registry = CollectorRegistry()
    Gauge("job_last_success_unixtime", "last success", registry=registry).set(1)

    def auth(token: str) -> Callable[..., Callable[[], None]]:
        from prometheus_client.exposition import default_handler

        def handler(url: str, method: str, timeout: float | None, headers: list[Any],
                    data: bytes) -> Callable[[], None]:
            return default_handler(url, method, timeout,
                                   [*headers, ("Authorization", f"Bearer {token}")], data)
        return handler

    push_to_gateway(service.url, "alpha-nightly", registry, handler=auth(ALPHA))
    with pytest.raises(urllib.error.HTTPError, match="403"):
        push_to_gateway(service.url, "beta", registry, handler=auth(ALPHA))
    # Influx: the database (v1) or bucket (v2).
    line = b"slurm_jobs,partition=gpu pending=3i\n"
    assert request(service.url + "/write?db=alpha", ALPHA, line)[0] == 204
    assert request(service.url + "/api/v2/write?bucket=beta&org=x", ALPHA, line,
                   headers={"Authorization": f"Token {ALPHA}"})[0] == 403
    basic = base64.b64encode(f"telegraf:{BETA}".encode()).decode()
    assert request(service.url + "/write?db=beta", None, line,
                   headers={"Authorization": f"Basic {basic}"})[0] == 204
    # remote_write: every series' source; one outside the scope refuses the whole body.
    now_ms = int(time.time() * 1000)
    mixed = snappy(write_request([({"__name__": "up", "source": "alpha"}, [(1.0, now_ms)]),
                                  ({"__name__": "up", "source": "beta"}, [(1.0, now_ms)])]))
    headers = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf"}
    status, body, _ = request(service.url + "/api/v1/write", ALPHA, mixed, headers=headers)
    assert status == 403
    assert "'beta'" in body
    alone = snappy(write_request([({"__name__": "rw_up", "source": "alpha"},
                                   [(1.0, now_ms)])]))
    assert request(service.url + "/api/v1/write", ALPHA, alone, headers=headers)[0] == 204
    # Nothing of a refused push was stored; each refusal counted with its source.
    assert stored_sources(service) == {"alpha", "alpha-login", "alpha-nightly", "beta"}
    # (beta holds only cluster-beta's own Influx line)
    assert rows(service.db_path, "SELECT count(*) FROM series WHERE source = 'beta'") == [(1,)]
    text = request(service.url + "/metrics", ADMIN, method="GET")[1]
    assert 'metrics_ingest_rejected_pushes_total{reason="forbidden",source="beta"} 4' in text
    # A push-only token does not read once reads need a token (ops has the read role).
    assert request(service.url + "/metrics", ALPHA, method="GET")[0] == 403
    assert request(service.url + "/metrics", None, method="GET")[0] == 401
    # The unscoped METRICS_AUTH_TOKEN keeps working, for any source, and reads.
    assert ingest(service, TOKEN, "gamma")[0] == 200
    assert request(service.url + "/metrics", TOKEN, method="GET")[0] == 200
    assert ALPHA not in service.log()
    assert ADMIN not in service.log()
    # The token's name, never the token, in the request log and the self-metrics.
    wait_until(lambda: "POST /ingest 403" in service.log(), 10, "the request log")
    assert "POST /ingest 403" in service.log()
    assert "token=cluster-alpha" in service.log()
    text = request(service.url + "/metrics", ADMIN, method="GET")[1]
    assert 'metrics_ingest_token_requests_total{token="cluster-alpha"}' in text
    assert 'metrics_ingest_token_requests_total{token="METRICS_AUTH_TOKEN"}' in text


def test_a_token_over_its_rate_waits_as_told(
        tmp_path: Path, service_factory: Callable[..., Service]) -> None:
    service = service_factory(env={"METRICS_TOKENS_FILE": str(tokens_file(tmp_path))})
    answers = [ingest(service, SLOW, "any") for _ in range(8)]  # burst 2 x rate 2 = 4
    statuses = [status for status, _, _ in answers]
    assert statuses[:4] == [200] * 4
    assert 429 in statuses[4:]
    _status, body, headers = next(answer for answer in answers if answer[0] == 429)
    assert "'slow' is over its rate of 2 requests per second" in json.loads(body)["error"]
    wait = int(headers["Retry-After"])
    assert 1 <= wait <= 2
    time.sleep(wait)  # the contract under test: served again once Retry-After has passed
    assert ingest(service, SLOW, "any")[0] == 200
    assert ingest(service, ALPHA, "alpha")[0] == 200  # other tokens never waited
    text = request(service.url + "/metrics", ADMIN, method="GET")[1]
    assert 'metrics_ingest_rejected_pushes_total{reason="rate_limited"}' in text


def test_the_tokens_file_is_read_again(tmp_path: Path,
                                       service_factory: Callable[..., Service]) -> None:
    path = tokens_file(tmp_path)
    service = service_factory(env={"METRICS_TOKENS_FILE": str(path)})
    newcomer = "gamma-token-0123456789"
    assert ingest(service, newcomer, "gamma")[0] == 401
    # A changed file, then SIGHUP: the new token pushes, a removed one no longer does.
    path.write_text(TOKENS.replace(sha(BETA), sha(newcomer)).replace('"beta"', '"gamma"'))
    service.process.send_signal(signal.SIGHUP)
    wait_until(lambda: ingest(service, newcomer, "gamma")[0] == 200, 10, "the new token")
    assert ingest(service, BETA, "beta")[0] == 401
    # A broken file keeps the last good tokens, and the log says why.
    path.write_text(TOKENS + '\n[[token]]\nname = "broken"\nroles = ["push"]\n')
    service.process.send_signal(signal.SIGHUP)
    wait_until(lambda: "tokens file not reloaded" in service.log(), 10, "the refusal")
    assert "give exactly one of `sha256` and `token`" in service.log()
    assert ingest(service, newcomer, "gamma")[0] == 200
    # A change is noticed without SIGHUP too (the file is watched).
    path.write_text(TOKENS)
    wait_until(lambda: ingest(service, BETA, "beta")[0] == 200, 10, "the watched file")
    assert service.process.poll() is None


def test_a_plain_token_needs_a_private_file(tmp_path: Path) -> None:
    path = tokens_file(tmp_path)
    path.chmod(0o644)
    done = subprocess.run(
        [sys.executable, "-m", "metrics_ingest", "serve", "--port", "0",
         "--db", str(tmp_path / "m.db"), "--tokens-file", str(path)],
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert "token 'ops': the file holds a plain `token` but is readable by others" in done.stderr
    assert ADMIN not in done.stderr


def make_certificate(directory: Path, name: str = "server") -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key),
                    "-out", str(cert)], check=True, capture_output=True, timeout=60)
    return cert, key


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "--silent", "--show-error", *args], capture_output=True,
                          text=True, timeout=30, check=False)


def test_https_for_curl_and_a_real_prometheus(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    service = start_service(tmp_path, env={"METRICS_TLS_CERT": str(cert),
                                           "METRICS_TLS_KEY": str(key)})
    try:
        url = service.url.replace("http://", "https://")
        assert "listening on https://" in service.log()
        pushed = curl("--cacert", str(cert), "-H", f"Authorization: Bearer {TOKEN}",
                      "-d", '{"source": "tls", "metrics": {"secure_up": 1}}',
                      f"{url}/ingest")
        assert pushed.returncode == 0, pushed.stderr
        assert json.loads(pushed.stdout) == {"status": "ok", "inserted": 1}
        scraped = curl("--cacert", str(cert), f"{url}/metrics")
        assert 'secure_up{source="tls"} 1' in scraped.stdout
        assert curl(f"{url}/metrics").returncode != 0  # an unknown certificate is refused
        config = f"""
global: {{scrape_interval: 1s}}
scrape_configs:
  - job_name: metrics-ingest
    scheme: https
    tls_config: {{ca_file: {cert}}}
    honor_labels: true
    static_configs: [{{targets: ["{url.removeprefix('https://')}"]}}]
"""
        with running_prometheus(tmp_path / "prometheus", config) as prometheus:
            found = prometheus.wait_for('secure_up{source="tls"}')
            assert found[0]["value"][1] == "1"
        # SIGHUP reads the certificate again: new connections get the new one.
        new_cert, new_key = make_certificate(tmp_path, "renewed")
        cert.write_bytes(new_cert.read_bytes())
        key.write_bytes(new_key.read_bytes())
        service.process.send_signal(signal.SIGHUP)
        wait_until(lambda: "TLS certificate" in service.log(), 10, "the reload")
        assert curl("--cacert", str(new_cert), f"{url}/healthz").returncode == 0
        assert service.process.poll() is None
    finally:
        service.process.kill()
        service.process.wait(10)


def test_loopback_hosts() -> None:
    assert is_loopback("127.0.0.1")
    assert is_loopback("::1")
    assert is_loopback("localhost")
    assert not is_loopback("0.0.0.0")
    assert not is_loopback("10.1.2.3")
    assert not is_loopback("node01.example")
