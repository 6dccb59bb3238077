"""Property-based tests (hypothesis) of every parser, and the hostile inputs of the issue over
HTTP: whatever arrives, the answer is a clear 4xx or a success, never a 500."""

from __future__ import annotations

import gzip
import io
import math
import string
import zlib
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from metrics_ingest.config import ConfigError, load_settings
from metrics_ingest.formats.exposition import render_exposition
from metrics_ingest.formats.json_push import checked_metrics, fast_metrics, parse_push
from metrics_ingest.formats.stored import render_stored
from metrics_ingest.http.api import parse_limit, parse_window
from metrics_ingest.http.errors import ApiError, BadRequest
from metrics_ingest.model import METRIC_NAME_RE, BodyRefused, FieldError, PushInvalid
from metrics_ingest.parsing import inflate
from tests.conftest import AUTH

Client = TestClient[web.Request, web.Application]
T = TypeVar("T")
NOW = 1_795_000_000.0
FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text()
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=20)
name_chars = string.ascii_letters + string.digits + "_:-\n. \"\\é"
metric_names = st.text(alphabet=name_chars, max_size=12) | st.sampled_from(
    ["ok", "slurm_pending_jobs", "metrics_ingest_x", "a" * 200, "a" * 201, ":x", "9a", ""])
metric_values = (st.integers(-(2**64), 2**64) | st.floats() | st.booleans() | st.none()
                 | st.text(max_size=3) | st.integers(10**300, 10**400))
pushes = st.fixed_dictionaries(
    {"source": st.text(max_size=70) | st.sampled_from(["hpc", "a.b-c_9"])},
    optional={
        "timestamp": st.integers(0, 2 * int(NOW)) | st.floats() | st.text(max_size=14)
        | st.sampled_from([str(int(NOW)), NOW - 10.5]),
        "metrics": st.dictionaries(metric_names, metric_values, max_size=6),
        "labels": st.dictionaries(st.text(alphabet=name_chars, max_size=8),
                                  st.text(max_size=10), max_size=4) | json_values,
        "extra": json_values,
    })


def outcome(call: Callable[[], T], *expected: type[Exception]) -> T | Exception:
    """The result, or the exception if it is one of `expected` (anything else propagates)."""
    try:
        return call()
    except expected as exc:
        return exc


@FUZZ
@given(st.one_of(json_values, pushes, st.lists(pushes, max_size=4)))
def test_parse_push_only_accepts_or_explains(payload: Any) -> None:
    parsed = outcome(lambda: parse_push(payload, NOW), PushInvalid)
    if isinstance(parsed, PushInvalid):
        assert 1 <= len(parsed.errors) <= 100
        assert all(isinstance(e, FieldError) and e.error for e in parsed.errors)
        return
    assert parsed.groups
    assert len(parsed.skipped or ()) <= 100
    for group in parsed.groups:
        assert len(group.names) == len(group.values) > 0
        assert all(METRIC_NAME_RE.fullmatch(name) for name in group.names)
        assert all(math.isfinite(value) for value in group.values)
        assert NOW - 365 * 86400 <= group.timestamp <= NOW + 3600


@FUZZ
@given(st.dictionaries(metric_names, metric_values, min_size=1, max_size=8))
def test_fast_path_agrees_with_the_careful_path(metrics: dict[str, Any]) -> None:
    errors: list[FieldError] = []
    careful = checked_metrics(metrics, "", errors)
    fast = fast_metrics(metrics)
    if errors:
        assert fast is None
    else:
        assert fast == careful or fast is None  # None only sends valid input the long way
        assert fast is not None, f"a valid push took the slow path: {metrics!r}"


@FUZZ
@given(st.binary(max_size=2000))
def test_inflate_never_crashes(data: bytes) -> None:
    result = outcome(lambda: inflate(data, 4096), BodyRefused)
    assert isinstance(result, bytes | BodyRefused)
    if isinstance(result, BodyRefused):
        assert result.status in (400, 413)


@FUZZ
@given(st.binary(max_size=3000), st.integers(1, 5000))
def test_inflate_round_trips_within_the_limit(data: bytes, limit: int) -> None:
    for packed in (gzip.compress(data), zlib.compress(data)):
        if len(data) <= limit:
            assert inflate(packed, limit) == data
        else:
            with pytest.raises(BodyRefused) as refused:
                inflate(packed, limit)
            assert refused.value.status == 413


@FUZZ
@given(st.text(max_size=16))
def test_window_and_limit_parsers(raw: str) -> None:
    for parse in (lambda r: parse_window(r, 7), parse_limit):
        value = outcome(lambda: parse(raw), BadRequest)  # noqa: B023 (called at once)
        assert value.message if isinstance(value, BadRequest) else value >= 1


@FUZZ
@given(st.dictionaries(st.sampled_from([option for option in (
    "METRICS_PORT", "METRICS_RETENTION_DAYS", "METRICS_PURGE_CRON", "METRICS_AUTH_TOKEN",
    "METRICS_EXPORT_TIMESTAMPS", "METRICS_MAX_BODY_BYTES", "METRICS_SYNCHRONOUS",
    "METRICS_QUEUE_MAX_SAMPLES", "METRICS_BATCH_MAX_SAMPLES")]), st.text(max_size=12)))
def test_settings_parse_or_name_the_variable(environ: dict[str, str]) -> None:
    result = outcome(lambda: load_settings(environ), ConfigError)
    if isinstance(result, ConfigError):
        assert any(variable in str(result) for variable in environ)  # names what was set
        assert "\n" not in str(result)


label_values = st.text(min_size=1, max_size=30).filter(lambda v: "\x00" not in v)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(["hpc", "a.b", "x-y"]), label_values,
                          st.floats(allow_nan=False, allow_infinity=False)),
                min_size=1, max_size=8, unique_by=lambda row: (row[0], row[1])))
def test_exposition_escapes_whatever_was_pushed(series: list[tuple[str, str, float]]) -> None:
    rows = sorted(("fuzzed", source, orjson.dumps({"note": note}).decode(), value,
                   1_795_000_000, 0) for source, note, value in series)
    text = render_exposition(render_stored(rows, with_timestamps=True)).decode()
    [family] = list(text_string_to_metric_families(text))
    assert family.name == "fuzzed"
    parsed = sorted((s.labels["source"], s.labels["note"], s.value) for s in family.samples)
    assert parsed == sorted(series)


HOSTILE_BODIES: list[tuple[str, bytes, dict[str, str], set[int]]] = [
    ("invalid UTF-8", b'{"source":"hpc","metrics":{"\xff":1}}', {}, {400}),
    ("deeply nested", b"[" * 100_000 + b"]" * 100_000, {}, {400}),
    ("1e309", b'{"source":"hpc","metrics":{"a":1e309}}', {}, {400}),
    ("huge integer", b'{"source":"hpc","metrics":{"a":' + b"9" * 400 + b"}}", {}, {400}),
    ("huge but finite", b'{"source":"hpc","metrics":{"a":18446744073709551616}}', {}, {200}),
    ("-0", b'{"source":"hpc","metrics":{"a":-0}}', {}, {200}),
    ("10 MB metric name", b'{"source":"hpc","metrics":{"' + b"a" * 10_000_000 + b'":1}}', {},
     {400, 413}),
    ("NaN literal", b'{"source":"hpc","metrics":{"a":NaN}}', {}, {400}),
    ("null body", b"null", {}, {400}),
    ("number body", b"42", {}, {400}),
    ("gzip claimed, plain sent", b'{"source":"hpc"}', {"Content-Encoding": "gzip"}, {400}),
    ("read as JSON whatever the type", b"{}", {"Content-Type": "text/plain"}, {400}),
    ("multipart", b"--x--", {"Content-Type": "multipart/form-data; boundary=x"}, {400}),
    ("label injection", orjson.dumps({"source": "hpc", "labels": {
        "x": 'a"} injected_series 1\n# TYPE evil gauge\n'}, "metrics": {"a": 1}}), {}, {200}),
]


@pytest.mark.parametrize(("what", "body", "headers", "statuses"), HOSTILE_BODIES,
                         ids=[case[0] for case in HOSTILE_BODIES])
async def test_hostile_bodies(client: Client, what: str, body: bytes, headers: dict[str, str],
                              statuses: set[int]) -> None:
    response = await client.post("/ingest", data=io.BytesIO(body), headers={
        **AUTH, "Content-Type": "application/json", **headers})
    assert response.status in statuses, await response.text()
    answer = await response.json()
    assert answer["status"] in ("ok", "error")
    assert len(await response.read()) < 20_000  # a 10 MB name is never echoed back
    text = await (await client.get("/metrics")).text()
    families = {family.name for family in text_string_to_metric_families(text)}
    assert "injected_series" not in families
    assert "evil" not in families


async def test_100000_metrics_in_one_push(client: Client) -> None:
    push = {"source": "wide", "metrics": {f"m{i}": i for i in range(100_000)}}
    response = await client.post("/ingest", data=io.BytesIO(orjson.dumps(push)),
                                 headers={**AUTH, "Content-Type": "application/json"})
    assert response.status == 200
    assert await response.json() == {"status": "ok", "inserted": 100_000}


def test_api_errors_are_api_errors() -> None:
    assert issubclass(BadRequest, ApiError)


@FUZZ
@given(st.one_of(json_values, pushes, st.lists(pushes | json_values, max_size=4)))
def test_push_source_never_crashes(payload: Any) -> None:
    from metrics_ingest.formats.json_push import push_source
    from metrics_ingest.model import SOURCE_RE

    source = push_source(payload)
    assert source is None or SOURCE_RE.fullmatch(source)
