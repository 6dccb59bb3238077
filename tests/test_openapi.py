"""The OpenAPI document stays true: it describes every route and status the API answers, and
schemathesis, generating requests from it, finds no 500 and no undocumented answer."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from metrics_ingest import openapi
from metrics_ingest.app import ENDPOINTS
from tests.conftest import AUTH, Service, start_service
from tests.test_cors_and_health import EVERY_ANSWER

Client = TestClient[web.Request, web.Application]
DOCUMENT = openapi.document()
schema = schemathesis.openapi.from_dict(DOCUMENT)


def test_every_route_is_described() -> None:
    routes = {(re.sub(r"\{(\w+):[^}]+\}", r"{\1}", spec.path), method.lower())
              for spec in ENDPOINTS for method in spec.handlers}
    described = {(path, method) for path, item in DOCUMENT["paths"].items() for method in item}
    assert described == routes


@pytest.mark.parametrize(("method", "path", "status"),
                         [(m, p.split("?")[0], s) for m, p, _, _, s in EVERY_ANSWER
                          if p.split("?")[0] in DOCUMENT["paths"] and s != 405
                          and m.lower() in DOCUMENT["paths"][p.split("?")[0]]])
def test_every_answer_is_documented(method: str, path: str, status: int) -> None:
    assert str(status) in DOCUMENT["paths"][path][method.lower()]["responses"]


async def test_served_document_is_the_same(client: Client) -> None:
    response = await client.get("/api/openapi.json")
    assert response.status == 200
    assert await response.json() == DOCUMENT


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = start_service(Path(tmp_path_factory.mktemp("openapi")))
    yield service
    service.process.send_signal(signal.SIGTERM)
    assert service.process.wait(10) == 0


@pytest.mark.slow
# remote_write bodies are snappy protobuf, which schemathesis cannot generate; that endpoint
# is exercised by its own decoder tests and by a real Prometheus (test_prometheus_e2e).
@schema.exclude(path="/api/v1/write").parametrize()
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
def test_live_api_conforms(case: schemathesis.Case, live: Service) -> None:
    case.call_and_validate(base_url=live.url, headers=dict(AUTH), checks=[
        not_a_server_error, status_code_conformance, content_type_conformance,
        response_schema_conformance])
