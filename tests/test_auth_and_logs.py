"""Auth: constant-time comparison, rotation, the read token, tokens never logged, and every
rejected push counted by reason (and source when the push names one)."""

from __future__ import annotations

import gzip
import signal
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from metrics_ingest import auth
from metrics_ingest.config import Settings
from tests.conftest import AUTH, TOKEN, Service

Client = TestClient[web.Request, web.Application]


def test_tokens_are_known_by_digest_only() -> None:
    policy = auth.AuthPolicy(["good-token"], "read-token")
    assert all(len(digest) == 32 for digest in policy.principals)
    assert "good-token" not in repr(policy.principals)
    pusher = policy.identify("good-token")
    assert pusher is not None
    assert pusher.may("push")
    assert pusher.may("read")
    reader = policy.identify("read-token")
    assert reader is not None
    assert not reader.may("push")
    assert reader.may("read")
    assert policy.identify("good-toke") is None
    assert policy.identify(None) is None
    assert not policy.reads_public
    assert auth.AuthPolicy(["good-token"]).reads_public


async def test_every_rejection_reason_is_counted(
    make_client: Callable[[Settings], Any], settings: Settings
) -> None:
    client: Client = await make_client(settings.replace(max_body_bytes=2048))
    assert (await client.post("/ingest", json={"source": "hpc"},
                              headers={"Authorization": "Bearer wrong"})).status == 401
    assert (await client.post("/ingest", json={"source": "hpc", "metrics": {"a": "x"}},
                              headers=AUTH)).status == 400
    assert (await client.post("/ingest", data=b"{", headers={
        **AUTH, "Content-Type": "application/json"})).status == 400
    too_big = {"source": "hpc", "metrics": {"a": 1}, "pad": "x" * 4000}
    assert (await client.post("/ingest", json=too_big, headers=AUTH)).status == 413
    assert (await client.post("/ingest", data=b"a=1", headers={
        **AUTH, "Content-Encoding": "br"})).status == 415
    text = await (await client.get("/metrics")).text()
    for line in (
        'metrics_ingest_rejected_pushes_total{reason="auth"} 1',
        'metrics_ingest_rejected_pushes_total{reason="invalid"} 1',
        'metrics_ingest_rejected_pushes_total{reason="invalid",source="hpc"} 1',
        'metrics_ingest_rejected_pushes_total{reason="too_large"} 1',
        'metrics_ingest_rejected_pushes_total{reason="unsupported_type"} 1',
    ):
        assert line in text, line


@pytest.mark.slow
def test_no_token_ever_reaches_the_log(service_factory: Callable[..., Service]) -> None:
    read_token = "read-secret-token-123"
    service = service_factory(env={"METRICS_READ_TOKEN": read_token},
                              args=("--log-level", "debug"))

    def call(path: str, token: str | None, body: Any = None) -> int:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None if body is None else gzip.compress(orjson.dumps(body))
        if data is not None:
            headers["Content-Encoding"] = "gzip"
        request = urllib.request.Request(service.url + path, data=data, headers=headers,
                                         method="POST" if body is not None else "GET")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    push = {"source": "hpc", "metrics": {"a": 1}}
    assert call("/ingest", TOKEN, push) == 200
    assert call("/ingest", TOKEN + "x", push) == 401
    assert call(f"/ingest?token={TOKEN}", None, push) == 401
    assert call(f"/metrics?auth={read_token}", read_token) == 200
    assert call("/api/sources", "wrong-read") == 401
    service.process.send_signal(signal.SIGTERM)
    assert service.process.wait(10) == 0
    log = service.log()
    assert "/ingest 401" in log  # the requests were logged ...
    assert "/metrics 200" in log
    for secret in (TOKEN, read_token):
        assert secret not in log  # ... but never a token, not even from a query string


def test_an_admin_token_alone_leaves_reads_public(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text('[[token]]\nname = "ops"\nsha256 = "' + "ab" * 32 + '"\nroles = ["admin"]\n')
    policy = auth.AuthPolicy(["push-token"], tokens_file=path)
    assert policy.reads_public
    path.write_text('[[token]]\nname = "grafana"\nsha256 = "' + "cd" * 32
                    + '"\nroles = ["read"]\n')
    assert policy.reload() is True
    assert not policy.reads_public
