"""Selectors: label matchers against the stored series, reading their samples, and what a
sample is at a step (the lookback) or over a range (a window), as Prometheus 2.42 has it:
both ends of a window and of the lookback are inclusive."""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson
import promql_parser as pp

from metrics_ingest.promql.values import NAME, BadData, Labels, RangeSeries, Unsupported
from metrics_ingest.store import QueryReader, QuerySeries

LOOKBACK_MS = 5 * 60 * 1000
Predicate = Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    op: str  # =, !=, =~, !~
    value: str
    test: Predicate

    def matches(self, labels: dict[str, str]) -> bool:
        return self.test(labels.get(self.name, ""))


def compile_matcher(name: str, op: str, value: str) -> Matcher:
    """A matcher; regexes are anchored at both ends, as Prometheus anchors them."""
    if op in ("=", "!="):
        equal = op == "="
        return Matcher(name, op, value, lambda text: (text == value) == equal)
    try:
        pattern = re.compile(f"(?:{value})")
    except re.error as exc:
        raise BadData(f"invalid regular expression {value!r}: {exc}") from None
    wanted = op == "=~"
    return Matcher(name, op, value, lambda text: (pattern.fullmatch(text) is not None) == wanted)


OPS = {"MatchOp.Equal": "=", "MatchOp.NotEqual": "!=", "MatchOp.Re": "=~", "MatchOp.NotRe": "!~"}


def selector_matchers(node: pp.VectorSelector) -> list[Matcher]:
    """The selector's matchers, its metric name as a `__name__` matcher first."""
    if node.matchers.or_matchers:
        raise Unsupported("`or` between label matchers (not in Prometheus 2.42)")
    matchers = []
    if node.name is not None:
        matchers.append(compile_matcher(NAME, "=", node.name))
    for item in node.matchers.matchers:
        matchers.append(compile_matcher(item.name, OPS[str(item.op)], item.value))
    return matchers


def parse_selector(text: str) -> list[Matcher]:
    """A `match[]` parameter: a series selector alone."""
    try:
        node = pp.parse(text)
    except ValueError as exc:
        raise BadData(str(exc)) from None
    if not isinstance(node, pp.VectorSelector):
        raise BadData(f"{text[:64]!r} is not a series selector (a metric name and/or "
                      "label matchers in braces)")
    matchers = selector_matchers(node)
    if all(matcher.test("") for matcher in matchers):
        raise BadData("match[] must contain at least one non-empty matcher")
    return matchers


def series_labels(row: QuerySeries) -> dict[str, str]:
    """A stored series' labels as PromQL sees them (and /metrics shows them)."""
    labels = {NAME: row.metric_name, "source": row.source}
    if row.labels:
        labels.update(orjson.loads(row.labels))
    return labels


def select(reader: QueryReader, matchers: Sequence[Matcher], since: int
           ) -> list[tuple[int, Labels]]:
    """The series with a sample at or after `since` (Unix seconds) that every matcher
    accepts, sorted by labels. An equality on the name reads that name's series only."""
    name = next((m.value for m in matchers if m.name == NAME and m.op == "="), None)
    found = []
    for row in reader.series(name, since):
        labels = series_labels(row)
        if all(matcher.matches(labels) for matcher in matchers):
            found.append((row.id, tuple(sorted(labels.items()))))
    found.sort(key=lambda item: item[1])
    return found


def read_range(reader: QueryReader, selected: Sequence[tuple[int, Labels]], first_ms: int,
               last_ms: int) -> list[RangeSeries]:
    """The selected series' samples in [first_ms, last_ms], timestamps in ms; series with
    none are left out."""
    start = -(-first_ms // 1000)  # samples are stored in whole seconds
    end = last_ms // 1000
    if end < start:
        return []
    read = reader.samples([series_id for series_id, _ in selected], start, end)
    ranges = []
    for series_id, labels in selected:
        held = read.get(series_id)
        if held is not None:
            ranges.append(RangeSeries(labels, [t * 1000 for t in held[0]], held[1]))
    return ranges


def at_step(series: RangeSeries, moments: Sequence[int], lookback: int = LOOKBACK_MS
            ) -> tuple[list[float | None], list[int | None]]:
    """The series' value at each moment: its newest sample at or before it, if that is at
    most `lookback` older; and that sample's timestamp."""
    times, values = series.times, series.values
    out: list[float | None] = []
    stamps: list[int | None] = []
    for moment in moments:
        index = bisect_right(times, moment) - 1
        if index >= 0 and times[index] >= moment - lookback:
            out.append(values[index])
            stamps.append(times[index])
        else:
            out.append(None)
            stamps.append(None)
    return out, stamps


def window(series: RangeSeries, first: int, last: int) -> tuple[list[int], list[float]]:
    """The points with timestamps in [first, last]."""
    low = bisect_left(series.times, first)
    high = bisect_right(series.times, last)
    return series.times[low:high], series.values[low:high]
