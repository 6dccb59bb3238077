"""The text-format parser behind the Pushgateway API: it reads what prometheus_client writes
exactly as prometheus_client's own parser does (except that it keeps counter names as
pushed, as the Pushgateway does), and names the line of anything it cannot read."""

from __future__ import annotations

import math

import pytest
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    Histogram,
    Info,
    Summary,
    generate_latest,
)
from prometheus_client.parser import text_string_to_metric_families

from metrics_ingest.formats.textformat import TextFormatError, parse


def exposition() -> str:
    registry = CollectorRegistry()
    Gauge("temperature", "Room \\ temperature\nin °C", ["room"], registry=registry).labels(
        'lab "B"\\2').set(21.5)
    Counter("requests", "requests", ["code"], registry=registry).labels("200").inc(7)
    histogram = Histogram("latency_seconds", "latency", buckets=(0.005, 0.1, 1, 2.5),
                          registry=registry)
    for value in (0.001, 0.05, 3):
        histogram.observe(value)
    Summary("size_bytes", "size", registry=registry).observe(512)
    Info("build", "build", registry=registry).info({"version": "1.2", "commit": "abc"})
    Enum("state", "state", states=["up", "down"], registry=registry).state("down")
    return generate_latest(registry).decode()


def flatten_ours(text: str) -> set[tuple[str, str, frozenset[tuple[str, str]], float]]:
    return {(family.name, name, frozenset(labels.items()), value)
            for family in parse(text) for name, labels, value, _ in family.samples}


def flatten_theirs(text: str) -> set[tuple[str, str, frozenset[tuple[str, str]], float]]:
    found = set()
    for family in text_string_to_metric_families(text):
        # prometheus_client names a counter family without _total; ours keeps the TYPE name.
        name = family.name + "_total" if family.type == "counter" else family.name
        for sample in family.samples:
            found.add((name, sample.name, frozenset(sample.labels.items()), sample.value))
    return found


def test_same_samples_and_families_as_prometheus_client() -> None:
    text = exposition()
    assert flatten_ours(text) == flatten_theirs(text)
    types = {family.name: family.type for family in parse(text)}
    assert types["latency_seconds"] == "histogram"
    assert types["requests_total"] == "counter"
    assert types["size_bytes"] == "summary"


def test_counters_keep_their_name() -> None:
    [family] = parse("# TYPE jobs counter\njobs 3\n")
    assert family.samples == [("jobs", {}, 3.0, False)]
    # prometheus_client would have stored "jobs_total": a name nobody pushed.
    assert next(iter(text_string_to_metric_families("# TYPE jobs counter\njobs 3\n"))
                ).samples[0].name == "jobs_total"


def test_untyped_samples_and_values() -> None:
    families = parse('a 1\nb{x="1",y="two words"} -2.5e3 1795000000000\nc +Inf\nd NaN\n'
                     "# random comment\n\ne{} 0\n")
    assert [(f.name, f.type) for f in families] == [("a", "untyped"), ("b", "untyped"),
                                                    ("c", "untyped"), ("d", "untyped"),
                                                    ("e", "untyped")]
    assert families[1].samples == [("b", {"x": "1", "y": "two words"}, -2500.0, True)]
    assert math.isinf(families[2].samples[0][2])
    assert math.isnan(families[3].samples[0][2])


@pytest.mark.parametrize(("body", "line"), [
    ("ok 1\nbad line here now\n", 2),
    ('x{a="1" 1\n', 1),
    ('x{a=1} 1\n', 1),
    ("x abc\n", 1),
    ("# TYPE x nonsense\n", 1),
    ("x 1 12:00\n", 1),
])
def test_errors_name_the_line(body: str, line: int) -> None:
    with pytest.raises(TextFormatError, match=f"^line {line}:"):
        parse(body)
