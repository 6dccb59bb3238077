"""The same samples in a real Prometheus 2.42 and in metrics-ingest, the same queries to
both: results must be equal (same series and labels, values to 1e-9 relative, same
timestamps) and errors of the same type.

The samples (three sources, labelled counters with resets, gauges at several intervals,
gaps longer than the lookback, a series that stops, a classic histogram, two names with the
same labels) go to Prometheus as blocks made by `promtool tsdb create-blocks-from
openmetrics` and to metrics-ingest as JSON pushes with their timestamps. Every query runs
as instant queries at several times and as range queries at several steps.
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from metrics_ingest.config import Settings
from metrics_ingest.store import open_store
from metrics_ingest.store.sample_arrays import GRACE_SECONDS
from metrics_ingest.store.sqlite import blocks
from tests.conftest import AUTH, promtool
from tests.prometheus_server import Prometheus, running_prometheus

pytestmark = pytest.mark.slow

# The samples: two hours ending an hour ago, in whole seconds (metrics-ingest stores
# seconds); aligned to the minute so range queries' steps fall on sample times too.
NOW = int(time.time()) // 60 * 60
T0 = NOW - 3 * 3600
SPAN = 2 * 3600
CONFIG = "global:\n  evaluation_interval: 1m\nscrape_configs: []\n"


@dataclass
class Stored:
    name: str
    source: str
    labels: dict[str, str]
    points: list[tuple[int, float]]


def make_series() -> list[Stored]:
    rng = random.Random(14)
    out: list[Stored] = []
    for source in ("alpha", "beta", "gamma"):
        for code, method in (("200", "get"), ("500", "get"), ("200", "post")):
            value = rng.uniform(0, 50)
            points = []
            for t in range(T0, T0 + SPAN, 15):
                if source == "beta" and T0 + 2400 <= t < T0 + 3000:
                    continue  # a 10-minute gap, longer than the lookback
                value += rng.choice((0, 1, 2, 5, 0.5))
                if rng.random() < 0.01:
                    value = rng.uniform(0, 3)  # a counter reset
                points.append((t, round(value, 3)))
            out.append(Stored("http_requests_total", source,
                              {"code": code, "method": method, "job": "api"}, points))
        for room, interval in (("lab", 10), ("hall", 30), ("roof", 60)):
            value = 20.0
            points = []
            for t in range(T0 + rng.randrange(interval), T0 + SPAN, interval):
                value += rng.uniform(-0.7, 0.7)
                points.append((t, round(value, 2)))
            out.append(Stored("temperature_celsius", source, {"room": room}, points))
        depth = [(t, float(rng.randrange(0, 40))) for t in range(T0, T0 + SPAN, 60)]
        out.append(Stored("queue_depth", source, {}, depth))
        # Two names with the same other labels: dropping the name makes them collide.
        out.append(Stored("cpu_user_seconds", source, {"cpu": "0"},
                          [(t, (t - T0) * 0.25) for t in range(T0, T0 + SPAN, 30)]))
        out.append(Stored("cpu_system_seconds", source, {"cpu": "0"},
                          [(t, (t - T0) * 0.1) for t in range(T0, T0 + SPAN, 30)]))
    # A series that stops at half time, one that starts late.
    out.append(Stored("batch_progress", "gamma", {"step": "early"},
                      [(t, (t - T0) / 60) for t in range(T0, T0 + 3600, 20)]))
    out.append(Stored("batch_progress", "gamma", {"step": "late"},
                      [(t, (t - T0) / 30) for t in range(T0 + 4000, T0 + SPAN, 20)]))
    # A classic histogram.
    bounds = ("0.1", "0.5", "1", "5", "+Inf")
    for source in ("alpha", "beta"):
        counts = [0.0] * len(bounds)
        total = 0.0
        bucket_points: dict[str, list[tuple[int, float]]] = {b: [] for b in bounds}
        sums, totals = [], []
        for t in range(T0, T0 + SPAN, 30):
            for _ in range(rng.randrange(0, 6)):
                observed = rng.expovariate(1.5)
                total += observed
                for i, bound in enumerate(bounds):
                    if observed <= float(bound):
                        counts[i] += 1
            for i, bound in enumerate(bounds):
                bucket_points[bound].append((t, counts[i]))
            sums.append((t, round(total, 4)))
            totals.append((t, counts[-1]))
        for bound in bounds:
            out.append(Stored("request_duration_seconds_bucket", source, {"le": bound},
                              bucket_points[bound]))
        out.append(Stored("request_duration_seconds_sum", source, {}, sums))
        out.append(Stored("request_duration_seconds_count", source, {}, totals))
    return out


def openmetrics(series: list[Stored]) -> str:
    lines = []
    for item in series:
        labels = {"source": item.source, **item.labels}
        block = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        lines += [f"{item.name}{{{block}}} {value!r} {t}" for t, value in item.points]
    return "\n".join(lines) + "\n# EOF\n"


def ingest_bodies(series: list[Stored]) -> Iterator[bytes]:
    """JSON pushes of ~5,000 objects each: one object per (source, labels, time)."""
    grouped: dict[tuple[str, str, int], dict[str, float]] = {}
    for item in series:
        key = json.dumps(item.labels, sort_keys=True)
        for t, value in item.points:
            grouped.setdefault((item.source, key, t), {})[item.name] = value
    objects = [{"source": source, "labels": json.loads(key), "timestamp": t, "metrics": metrics}
               for (source, key, t), metrics in grouped.items()]
    for start in range(0, len(objects), 5000):
        yield json.dumps(objects[start:start + 5000]).encode()


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    workdir = tmp_path_factory.mktemp("prometheus")
    source = workdir / "samples.om"
    source.write_text(openmetrics(make_series()))
    subprocess.run([promtool(), "tsdb", "create-blocks-from", "openmetrics", str(source),
                    str(workdir / "tsdb")], check=True, capture_output=True, timeout=120)
    with running_prometheus(workdir, CONFIG) as server:
        yield server


# -- the queries ----------------------------------------------------------------------------

SELECTORS = [
    "http_requests_total",
    'http_requests_total{source="alpha"}',
    'http_requests_total{code!="200"}',
    'http_requests_total{method=~"g.t"}',
    'http_requests_total{source!~"al.*|gam+a"}',
    '{__name__=~"temperature_.*", room="lab"}',
    "queue_depth offset 10m",
    "temperature_celsius offset -5m",
    "batch_progress",
    'request_duration_seconds_bucket{source="alpha"}',
]
RANGE_FUNCTIONS = [
    "rate(http_requests_total[5m])",
    "rate(http_requests_total[1m])",
    'irate(http_requests_total{source="beta"}[5m])',
    "increase(http_requests_total[10m])",
    "delta(temperature_celsius[10m])",
    "idelta(temperature_celsius[5m])",
    "deriv(temperature_celsius[15m])",
    "predict_linear(temperature_celsius[30m], 3600)",
    "changes(queue_depth[15m])",
    "resets(http_requests_total[1h])",
    "avg_over_time(temperature_celsius[10m])",
    "sum_over_time(queue_depth[10m])",
    "min_over_time(temperature_celsius[7m])",
    "max_over_time(temperature_celsius[7m])",
    "count_over_time(temperature_celsius[5m])",
    "last_over_time(batch_progress[10m])",
    "present_over_time(batch_progress[10m])",
    "stddev_over_time(temperature_celsius[10m])",
    "stdvar_over_time(queue_depth[10m])",
    "quantile_over_time(0.9, temperature_celsius[15m])",
    "holt_winters(temperature_celsius[10m], 0.5, 0.3)",
    "rate(http_requests_total[5m] offset 30m)",
    "max_over_time(rate(http_requests_total[2m])[10m:1m])",
    "avg_over_time(queue_depth[20m:])",
    "absent_over_time(batch_progress[5m])",
    'absent_over_time(nonexistent{job="x"}[5m])',
]
INSTANT_FUNCTIONS = [
    "abs(delta(temperature_celsius[10m]))",
    "ceil(temperature_celsius)",
    "floor(temperature_celsius)",
    "round(temperature_celsius)",
    "round(temperature_celsius, 0.25)",
    "clamp(temperature_celsius, 19.5, 20.5)",
    "clamp_max(temperature_celsius, 20)",
    "clamp_min(queue_depth, 10)",
    "exp(queue_depth / 10)",
    "ln(queue_depth)",
    "log2(queue_depth + 1)",
    "log10(temperature_celsius)",
    "sqrt(queue_depth)",
    "time()",
    "timestamp(temperature_celsius)",
    "timestamp(rate(http_requests_total[5m]))",
    "vector(time())",
    "scalar(queue_depth{source=\"alpha\"})",
    "scalar(queue_depth)",
    'absent(nonexistent{job="x", env="prod"})',
    "absent(queue_depth)",
    'label_replace(queue_depth, "short", "$1", "source", "(.)(.*)")',
    'label_replace(queue_depth, "source", "s-${1}", "source", "(a.*)")',
    'label_join(http_requests_total, "key", "/", "source", "code", "method")',
    "sort(queue_depth)",
    "sort_desc(queue_depth)",
    "histogram_quantile(0.9, rate(request_duration_seconds_bucket[10m]))",
    "histogram_quantile(0.5, sum by (le) (rate(request_duration_seconds_bucket[10m])))",
    "histogram_quantile(0.99, request_duration_seconds_bucket)",
    "hour()",
    "minute(vector(1700000123))",
    "day_of_week()",
    "day_of_month(timestamp(queue_depth))",
    "days_in_month(vector(1706745600))",
    "month()",
    "year()",
    "day_of_year()",
    "sgn(delta(temperature_celsius[10m]))",
]
AGGREGATIONS = [
    "sum(http_requests_total)",
    "sum by (source) (rate(http_requests_total[5m]))",
    "sum without (code, method) (rate(http_requests_total[5m]))",
    "avg by (room) (temperature_celsius)",
    "min(temperature_celsius)",
    "max by (source) (temperature_celsius)",
    "count(temperature_celsius)",
    "count by (source) (http_requests_total)",
    "group by (source) (http_requests_total)",
    "stddev(temperature_celsius)",
    "stdvar by (source) (temperature_celsius)",
    "topk(2, queue_depth)",
    "bottomk(1, temperature_celsius)",
    "topk by (source) (1, temperature_celsius)",
    "quantile(0.5, temperature_celsius)",
    "quantile by (room) (0.9, temperature_celsius)",
    'count_values("depth", queue_depth)',
    'count_values without (source) ("depth", queue_depth)',
    "sum(rate(http_requests_total[5m])) by (code)",
    "avg(sum by (source) (queue_depth))",
]
BINARY = [
    "queue_depth * 2",
    "2 ^ queue_depth{source=\"alpha\"}",
    "queue_depth % 7",
    "queue_depth / 0",
    "temperature_celsius - 20",
    "queue_depth > 20",
    "queue_depth > bool 20",
    "20 < queue_depth",
    "temperature_celsius >= 20",
    "queue_depth == bool 10",
    "1 + 2 * 3",
    "2 ^ 3 ^ 2",
    "10 % 3 - 4 / 8",
    "5 > bool 3",
    "-queue_depth",
    "rate(http_requests_total[5m]) / on (source) group_left sum by (source) "
    "(rate(http_requests_total[5m]))",
    "sum by (source) (rate(http_requests_total[5m])) / on (source) queue_depth",
    "queue_depth / ignoring (room) group_right avg by (source, room) (temperature_celsius)",
    "cpu_user_seconds / ignoring (__name__) cpu_system_seconds",
    "cpu_user_seconds + on (source, cpu) cpu_system_seconds",
    "request_duration_seconds_sum / request_duration_seconds_count",
    "queue_depth and on (source) temperature_celsius{room=\"lab\"} > 20",
    "queue_depth or temperature_celsius",
    "batch_progress or vector(0)",
    "queue_depth unless on (source) (temperature_celsius{room=\"lab\"} > 20)",
    "http_requests_total and http_requests_total{code=\"500\"}",
    "temperature_celsius > on (source) group_left queue_depth",
    "queue_depth atan2 temperature_celsius{room=\"lab\"}",
    "temperature_celsius{room=\"lab\"} + on (source) group_left (room) queue_depth",
]
ERRORS = [
    "rate(http_requests_total)",
    "sum(",
    "nonexistent_function(queue_depth)",
    "queue_depth + on (source) temperature_celsius",
    "temperature_celsius * on (source) group_left http_requests_total",
    'rate({__name__=~"cpu_.*"}[5m])',
    '{__name__=~"cpu_.*"} * 1',
    '{source="alpha"}[5m] * 2',
    'queue_depth{source=~"("}',
    '{job=~".*"}',
]
MODIFIERS = [
    f"queue_depth @ {T0 + 1234}",
    "queue_depth @ start()",
    "temperature_celsius{room=\"roof\"} @ end()",
    f"rate(http_requests_total[5m] @ {T0 + 3000})",
    f"rate(http_requests_total[5m] @ {T0 + 3600} offset 10m)",
    "max_over_time(queue_depth[10m:2m] offset 5m)",
    f"sum_over_time(queue_depth[10m:1m] @ {T0 + 4000})",
    "avg_over_time(rate(http_requests_total[1m])[5m:30s])",
    "max_over_time(max_over_time(queue_depth[5m:1m])[10m:2m])",
    f"timestamp(queue_depth @ {T0 + 999})",
    "time() - timestamp(temperature_celsius)",
    "queue_depth - queue_depth offset 1h",
    "absent(queue_depth offset 3h)",
    "predict_linear(temperature_celsius[20m] offset 5m, 600)",
    "deriv(queue_depth[10m:1m])",
    "rate(queue_depth[5m:])",
    "queue_depth[10m:3m]",
    "temperature_celsius[2m]",
    "queue_depth[5m] offset 1m",
]
EDGES = [
    "queue_depth / queue_depth",
    "ln(queue_depth - 100)",
    "queue_depth % 0",
    "0 / 0",
    "-1 ^ 0.5",
    "round(temperature_celsius, 0)",
    "scalar(queue_depth{source=\"beta\"}) * temperature_celsius",
    "vector(1) and on () queue_depth",
    "queue_depth * on () group_left vector(2)",
    "-(-queue_depth)",
    "- time()",
    '"some text"',
    "sum by (__name__) ({__name__=~\"cpu_.*\"})",
    "max without (__name__) ({__name__=~\"cpu_.*\"})",
    "max by (room) (temperature_celsius) > bool 20",
    "temperature_celsius > bool on (source, room) temperature_celsius offset 5m",
    "http_requests_total unless ignoring (code) http_requests_total{code=\"500\"}",
    "topk(1, cpu_user_seconds{source=\"alpha\"} or cpu_system_seconds)",
    "bottomk by (source) (2, http_requests_total)",
    'count_values("v", round(temperature_celsius))',
    'label_replace(queue_depth, "x", "$2", "source", "(no)(match)")',
    'label_replace(queue_depth, "x", "$$1-$9-$bad", "source", "(.*)")',
    'label_join(queue_depth, "source", "", "nope")',
    "sort_desc(sum by (source) (rate(http_requests_total[5m])))",
    "quantile(1.5, queue_depth)",
    "quantile(-1, queue_depth)",
    "topk(0, queue_depth)",
    "histogram_quantile(1.5, request_duration_seconds_bucket)",
    "count(count by (source) (temperature_celsius))",
    "stddev by (source) (queue_depth)",
    "avg(queue_depth) - on () group_left min(queue_depth)",
    "clamp(queue_depth, 30, 10)",
    "abs(-queue_depth)",
    "day_of_week(vector(0))",
    "minute(queue_depth)",
]
EXPRESSIONS = (SELECTORS + RANGE_FUNCTIONS + INSTANT_FUNCTIONS + AGGREGATIONS + BINARY
               + MODIFIERS + EDGES + ERRORS)
# Instant evaluation times: inside the data (one with milliseconds), inside beta's gap, just
# after the end (within the lookback), and past it.
INSTANTS = [T0 + 1800, T0 + 3661.5, T0 + 2700, SPAN + T0 + 120, SPAN + T0 + 600]
RANGES = [(T0 + 600, T0 + 4200, 60), (T0 + 2000, T0 + 3400, 15),
          (T0 + SPAN - 1800, T0 + SPAN + 900, 420)]
# Whole requests Prometheus refuses, to be refused alike.
BAD_REQUESTS: list[tuple[str, dict[str, str]]] = [
    ("query", {"query": "queue_depth", "time": "not-a-time"}),
    ("query", {"query": "queue_depth[5m]", "time": str(T0 + 1800), "timeout": "x"}),
    ("query_range", {"query": "queue_depth", "start": str(T0), "end": str(T0 + 60),
                     "step": "0"}),
    ("query_range", {"query": "queue_depth", "start": str(T0 + 60), "end": str(T0),
                     "step": "15"}),
    ("query_range", {"query": "queue_depth[5m]", "start": str(T0), "end": str(T0 + 600),
                     "step": "60"}),
    ("query_range", {"query": "queue_depth", "start": str(T0), "end": str(T0 + 86400 * 3),
                     "step": "15"}),
    ("query_range", {"query": "queue_depth", "start": "yesterday", "end": str(T0),
                     "step": "15"}),
    ("query_range", {"query": '"text"', "start": str(T0), "end": str(T0 + 60), "step": "15"}),
]


def cases() -> list[tuple[str, dict[str, str]]]:
    out: list[tuple[str, dict[str, str]]] = []
    for expression in EXPRESSIONS:
        for at in INSTANTS:
            out.append(("query", {"query": expression, "time": str(at)}))
        if expression in ERRORS or expression.startswith(("sort", "time()")):
            continue
        for start, end, step in RANGES:
            out.append(("query_range", {"query": expression, "start": str(start),
                                        "end": str(end), "step": str(step)}))
    return out + BAD_REQUESTS


# -- comparing ------------------------------------------------------------------------------

def same_value(a: str, b: str) -> bool:
    x, y = float(a), float(b)
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12)


def differences(expected: dict[str, Any], got: dict[str, Any], ordered: bool) -> str | None:
    """What differs between Prometheus's answer and ours (None: the same)."""
    if expected["status"] != got["status"]:
        return f"status {got['status']} ({got.get('error')}), Prometheus {expected['status']} " \
               f"({expected.get('error')})"
    if expected["status"] == "error":
        if expected["errorType"] != got.get("errorType"):
            return (f"errorType {got.get('errorType')} ({got.get('error')}), Prometheus "
                    f"{expected['errorType']} ({expected['error']})")
        return None
    want, have = expected["data"], got["data"]
    if want["resultType"] != have["resultType"]:
        return f"resultType {have['resultType']}, Prometheus {want['resultType']}"
    if want["resultType"] in ("scalar", "string"):
        w, h = want["result"], have["result"]
        same = w[0] == h[0] and (w[1] == h[1] if want["resultType"] == "string"
                                 else same_value(w[1], h[1]))
        return None if same else f"{h}, Prometheus {w}"

    def keyed(result: list[dict[str, Any]]) -> list[tuple[str, Any]]:
        items = [(json.dumps(r["metric"], sort_keys=True), r.get("value") or r.get("values"))
                 for r in result]
        return items if ordered else sorted(items, key=lambda item: item[0])

    w, h = keyed(want["result"]), keyed(have["result"])
    if [k for k, _ in w] != [k for k, _ in h]:
        return f"series {[k for k, _ in h]}, Prometheus {[k for k, _ in w]}"
    for (key, wv), (_, hv) in zip(w, h, strict=True):
        wp = wv if want["resultType"] == "matrix" else [wv]
        hp = hv if want["resultType"] == "matrix" else [hv]
        if [p[0] for p in wp] != [p[0] for p in hp]:
            return f"{key}: times {[p[0] for p in hp]}, Prometheus {[p[0] for p in wp]}"
        for (t, a), (_, b) in zip(wp, hp, strict=True):
            if not same_value(a, b):
                return f"{key} at {t}: {b}, Prometheus {a}"
    return None


def ask_prometheus(server: Prometheus, endpoint: str, params: dict[str, str]) -> dict[str, Any]:
    url = f"{server.url}/api/v1/{endpoint}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            answer: dict[str, Any] = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        answer = json.loads(exc.read())
    return answer


async def test_same_answers_as_prometheus(
    prometheus: Prometheus, make_client: Callable[[Settings], Any], settings: Settings
) -> None:
    """Read from the samples, on either engine."""
    client: TestClient[Any, Any] = await make_client(settings.replace(retention_days=30))
    await store_and_compare(client, prometheus)


async def test_same_answers_with_the_first_hour_in_packed_blocks(
    prometheus: Prometheus, make_client: Callable[[Settings], Any],
    sqlite_settings: Settings,
) -> None:
    """SQLite's packed blocks (store/sqlite/blocks.py) for the first hour, the samples for
    the rest: a query across the two reads both."""
    client: TestClient[Any, Any] = await make_client(sqlite_settings.replace(retention_days=30))
    await store_and_compare(client, prometheus, sqlite_settings, T0 + 3600)


async def store_and_compare(client: TestClient[Any, Any], prometheus: Prometheus,
                            blocked: Settings | None = None, blocks_upto: int = 0) -> None:
    for body in ingest_bodies(make_series()):
        response = await client.post("/ingest", data=body, headers=AUTH)
        assert response.status == 200, await response.text()
    if blocked is not None:
        store = open_store(blocked.db_path)
        session = store.open_writer("normal")
        builder = store.open_block_builder()
        assert builder is not None
        assert blocks.build_closed(builder, session, blocks_upto + GRACE_SECONDS) >= 6
        builder.close()
        session.close()
    passed, answered, failed = 0, 0, []
    started = time.monotonic()
    for endpoint, params in cases():
        expected = ask_prometheus(prometheus, endpoint, params)
        # Half the queries as GET, half as a form POST, as Grafana sends them.
        if passed % 2:
            response = await client.get(f"/api/v1/{endpoint}", params=params)
        else:
            response = await client.post(f"/api/v1/{endpoint}", data=params)
        got = await response.json()
        if expected["status"] == "error":
            expected_status = {"bad_data": 400, "execution": 422}.get(expected["errorType"])
            if expected_status is not None and response.status != expected_status:
                got = {"status": "error", "errorType": f"HTTP {response.status}",
                       "error": got.get("error")}
        problem = differences(expected, got, ordered=params["query"].startswith("sort"))
        if problem is None:
            passed += 1
            if expected["status"] == "success" and expected["data"]["result"]:
                answered += 1
        else:
            failed.append(f"{endpoint} {params}: {problem}")
    elapsed = time.monotonic() - started
    print(f"\n{passed} queries answered as Prometheus answers them ({answered} with a "
          f"non-empty result), {len(failed)} not ({elapsed:.1f} s)")
    for line in failed:
        print("  " + line[:600])
    assert not failed
    assert passed >= 200
    assert answered >= 0.7 * passed  # the data is there: most queries find something
