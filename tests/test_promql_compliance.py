"""The Prometheus PromQL compliance suite (prometheus/compliance, promql/; run in Python by
bench/promql_compliance) passes in full on both engines: every expanded test case as range
queries over the tester's window, compared with a real Prometheus 2.42 holding the same
remote_write data as its comparer compares. About 30 s per engine."""

from __future__ import annotations

import pytest

from bench.promql_compliance import cases, comparer, demo
from bench.promql_compliance.run import Data, describe, run_suite
from tests.conftest import PostgresServer
from tests.prometheus_server import prometheus_binary

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def data() -> Data:
    return Data.make()


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_compliance_suite_passes(engine: str, data: Data, request: pytest.FixtureRequest
                                 ) -> None:
    prometheus_binary()  # skipped where Prometheus is not installed (failed in CI)
    db_url = None
    if engine == "postgres":
        server: PostgresServer = request.getfixturevalue("postgres")
        db_url = server.new_database()
    report = run_suite(engine, data, db_url=db_url)
    print("\n" + describe(report))
    assert len(report.results) == 548
    assert report.answered >= 490  # the data is there: the cases find what they ask for
    assert report.passed == len(report.results), describe(report)


def test_cases_expand_as_the_tester_expands_them() -> None:
    expanded = cases.load_cases()
    queries = [case.query for case in expanded]
    assert queries[:3] == ["42", "1.234", ".123"]
    # Variant arguments vary the first listed slowest.
    assert queries.index("sum_over_time(demo_memory_usage_bytes[1s])") + 1 == queries.index(
        "sum_over_time(demo_memory_usage_bytes[15s])")
    assert "holt_winters(demo_disk_usage_bytes[10m], 0.8, 0.1)" in queries
    assert sum(case.should_fail for case in expanded) == 5


@pytest.mark.parametrize(("a", "b", "before"), [
    ({"a": "1"}, {"a": "1", "b": "2"}, True),  # fewer labels first, whatever the values
    ({"z": "1"}, {"a": "1", "b": "2"}, True),
    ({"a": "1", "c": "1"}, {"a": "1", "b": "1"}, True),  # the first lacks b: it goes first
    ({"a": "1", "b": "1"}, {"a": "1", "c": "1"}, False),
    ({"a": "1", "b": "1"}, {"a": "1", "b": "2"}, True),
    ({"a": "1"}, {"a": "1"}, False),
])
def test_tested_answers_are_sorted_as_client_golang_sorts(a: dict[str, str], b: dict[str, str],
                                                          before: bool) -> None:
    assert comparer.before(a, b) is before


@pytest.mark.parametrize(("x", "y", "same"), [
    (1.0, 1.000009, True), (1.0, 1.00002, False), (0.0, 1e-300, False),
    (float("nan"), float("nan"), True), (float("nan"), 1.0, False),
    (float("inf"), float("inf"), True), (float("inf"), 1e308, False),
])
def test_values_compare_within_the_comparers_fraction(x: float, y: float, same: bool) -> None:
    assert comparer.same_value(x, y) is same


def test_demo_data_marks_the_intermittent_metric_stale() -> None:
    scrapes = list(demo.scrapes(demo.INSTANCES[0], 0, 1_800_000_000, 1_800_000_240, False))
    intermittent = [(scrape.millis, value) for scrape in scrapes
                    for (name, _), value in scrape.samples.items()
                    if name == "demo_intermittent_metric"]
    markers = [millis for millis, value in intermittent if value != value]
    assert [millis // 60_000 % 2 for millis in markers] == [1, 1]  # each odd minute's start
    assert all(millis // 60_000 % 2 == 0 for millis, value in intermittent if value == value)
