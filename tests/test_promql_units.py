"""The pure parts of the PromQL engine, by table: value formatting as Go writes floats, the
API's time and duration parameters, Go's IEEE arithmetic, and the query readers' deadline
(a read past it is interrupted, on both engines)."""

from __future__ import annotations

import math
import re
import sqlite3
import time

import psycopg
import pytest

from metrics_ingest.config import Settings
from metrics_ingest.http.prom_params import parse_duration, parse_time
from metrics_ingest.promql.binary import go_div, go_mod, go_pow
from metrics_ingest.promql.functions import expand, go_round
from metrics_ingest.promql.values import BadData, format_label_value, format_value, json_time
from metrics_ingest.store import StorageError, open_store


@pytest.mark.parametrize(("value", "text"), [
    (0.0, "0"), (-0.0, "-0"), (1.0, "1"), (-7.0, "-7"), (0.1, "0.1"), (1 / 3, "0.3333333333333333"),
    (1e15, "1000000000000000"), (1.5e16, "15000000000000000"), (1e20, "100000000000000000000"),
    (1e21, "1e+21"), (1.25e22, "1.25e+22"), (1e-6, "0.000001"), (1.5e-5, "0.000015"),
    (9.99e-7, "9.99e-07"), (5e-324, "5e-324"), (math.inf, "+Inf"), (-math.inf, "-Inf"),
    (math.nan, "NaN"), (123456.789, "123456.789"), (2.0000000000000004, "2.0000000000000004"),
])
def test_values_as_go_writes_them(value: float, text: str) -> None:
    assert format_value(value) == text


@pytest.mark.parametrize(("value", "text"), [
    (1e21, "1000000000000000000000"), (1e-7, "0.0000001"), (3.0, "3"), (-0.0, "-0"),
    (math.nan, "NaN"), (math.inf, "+Inf"),
])
def test_count_values_labels(value: float, text: str) -> None:
    assert format_label_value(value) == text


def test_json_times() -> None:
    assert json_time(1_700_000_000_000) == 1_700_000_000
    assert json_time(1_700_000_000_123) == 1_700_000_000.123
    assert json_time(-1500) == -1.5


@pytest.mark.parametrize(("raw", "ms"), [
    ("1700000000", 1_700_000_000_000), ("1700000000.1234", 1_700_000_000_123),
    ("1700000000.9996", 1_700_000_001_000), ("-1.5", -1500), ("1e3", 1_000_000),
    ("2023-11-14T22:13:20Z", 1_700_000_000_000), ("2023-11-14T22:13:20.25Z", 1_700_000_000_250),
    ("2023-11-14T23:13:20+01:00", 1_700_000_000_000),
])
def test_times(raw: str, ms: int) -> None:
    assert parse_time(raw) == ms


@pytest.mark.parametrize("raw", ["", "noon", "2023-11-14", "2023-13-01T00:00:00Z",
                                 "2023-11-14 22:13:20Z", "1_000", "inf", "0x10"])
def test_bad_times(raw: str) -> None:
    with pytest.raises(BadData, match="cannot parse"):
        parse_time(raw)


@pytest.mark.parametrize(("raw", "ms"), [
    ("15", 15_000), ("0.5", 500), ("1h30m", 5_400_000), ("1ms", 1), ("2d", 172_800_000),
    ("1w", 604_800_000), ("1y", 31_536_000_000), ("0", 0),
])
def test_durations(raw: str, ms: int) -> None:
    assert parse_duration(raw) == ms


@pytest.mark.parametrize("raw", ["", "1x", "h", "5m1h", "1e400"])
def test_bad_durations(raw: str) -> None:
    with pytest.raises(BadData, match="cannot parse"):
        parse_duration(raw)


@pytest.mark.parametrize(("function", "a", "b", "expected"), [
    (go_div, 1.0, 0.0, math.inf), (go_div, -1.0, 0.0, -math.inf), (go_div, 1.0, -0.0, -math.inf),
    (go_div, 0.0, 0.0, math.nan), (go_mod, 5.0, 0.0, math.nan), (go_mod, -7.0, 3.0, -1.0),
    (go_mod, 5.0, math.inf, 5.0), (go_mod, math.inf, 2.0, math.nan),
    (go_pow, -8.0, 1 / 3, math.nan), (go_pow, 0.0, -1.0, math.inf), (go_pow, -0.0, -1.0, -math.inf),
    (go_pow, 10.0, 400.0, math.inf), (go_pow, -10.0, 401.0, -math.inf), (go_pow, 2.0, 10.0, 1024.0),
    (go_round, 2.5, 1.0, 3.0), (go_round, -2.5, 1.0, -2.0), (go_round, 1.26, 0.25, 1.25),
    (go_round, 3.0, 0.0, math.nan), (go_round, math.inf, 1.0, math.inf),
])
def test_go_arithmetic(function: object, a: float, b: float, expected: float) -> None:
    got = function(a, b)  # type: ignore[operator]
    assert (math.isnan(got) and math.isnan(expected)) or got == expected


@pytest.mark.parametrize(("template", "expected"), [
    ("$1", "ab"), ("${1}x", "abx"), ("$1x", ""), ("$$1", "$1"), ("$2-$1", "c-ab"),
    ("${name}", "c"), ("$9", ""), ("$", "$"), ("a$", "a$"), ("${x", "${x"),
])
def test_label_replace_templates(template: str, expected: str) -> None:
    match = re.fullmatch(r"(?:(a.)(?P<name>c))", "abc")
    assert match is not None
    assert expand(template, match) == expected


FILL = {
    "sqlite": "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300000)"
              " INSERT INTO samples (timestamp, series_id, value) SELECT i, 1, i FROM n",
    "postgres": "INSERT INTO samples (timestamp, series_id, value)"
                " SELECT i, 1, i FROM generate_series(1, 300000) i",
}


def test_reader_past_its_deadline_is_interrupted(settings: Settings, engine: str) -> None:
    store = open_store(settings.database)
    store.migrate()
    if settings.db_url is not None:
        with psycopg.connect(settings.db_url, autocommit=True) as conn:
            conn.execute(FILL[engine])
    else:
        with sqlite3.connect(settings.db_path) as db:
            db.execute(FILL[engine])
    reader = store.open_query_reader()
    try:
        assert len(reader.samples([1], 0, 10)[1][0]) == 10
        reader.set_deadline(time.monotonic() - 1)
        with pytest.raises(StorageError):
            reader.samples([1, 2, 3], 0, 2**40)
        reader.set_deadline(None)  # and the connection serves the next query
        assert len(reader.samples([1], 0, 10)[1][0]) == 10
    finally:
        reader.close()


def test_shutdown_cancels_a_running_query(settings: Settings) -> None:
    """At shutdown (QueryService.close) running queries end with Prometheus's `canceled`."""
    from metrics_ingest import promql
    from metrics_ingest.promql.values import QueryCanceled

    store = open_store(settings.database)
    store.migrate()
    reader = store.open_query_reader()
    try:
        with pytest.raises(QueryCanceled) as raised:
            promql.instant_query(reader, "up", 1000, max_samples=10, deadline=time.monotonic() + 9,
                                 cancelled=lambda: True)
        assert raised.value.error_type == "canceled"
    finally:
        reader.close()
