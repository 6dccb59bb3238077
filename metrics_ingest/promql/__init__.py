"""PromQL over the stored series: `instant_query` and `range_query` evaluate an expression
as Prometheus 2.42 does and return the `data` of its API's answer; anything the evaluator
does not support is a BadData naming the part, never a wrong answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from metrics_ingest.promql.engine import Evaluator
from metrics_ingest.promql.selectors import LabelsCache
from metrics_ingest.promql.tree import check_range_type, parse
from metrics_ingest.promql.values import (
    BadData,
    Labels,
    Matrix,
    QueryError,
    Scalar,
    String,
    Value,
    Vector,
    format_value,
    json_time,
)
from metrics_ingest.store import QueryReader

MAX_POINTS = 11_000  # per series of a range query, as Prometheus limits it

__all__ = ["BadData", "LabelsCache", "QueryError", "instant_query", "range_query"]


def instant_query(reader: QueryReader, text: str, at: int, *, max_samples: int,
                  deadline: float, cancelled: Callable[[], bool] = lambda: False,
                  labels_cache: LabelsCache | None = None) -> dict[str, Any]:
    """`text` evaluated at `at` (ms): the `data` of /api/v1/query's answer. `deadline` is
    a time.monotonic() value: past it, QueryTimeout. `labels_cache`: decoded label sets
    kept between queries."""
    try:
        node = parse(text)
    except BadData as exc:
        raise BadData(f'invalid parameter "query": {exc.message}') from None
    evaluator = Evaluator(reader, at, at, max_samples=max_samples,
                          deadline=deadline, cancelled=cancelled, labels_cache=labels_cache)
    reader.set_deadline(evaluator.deadline)
    try:
        value = evaluator.eval(node, [at])
    finally:
        reader.set_deadline(None)
    return render_instant(value, at)


def range_query(reader: QueryReader, text: str, start: int, end: int, step: int, *,
                max_samples: int, deadline: float, cancelled: Callable[[], bool] = lambda: False,
                labels_cache: LabelsCache | None = None) -> dict[str, Any]:
    """`text` at every step from `start` to `end` (ms): /api/v1/query_range's `data`."""
    node = parse(text)
    check_range_type(node)
    evaluator = Evaluator(reader, start, end, max_samples=max_samples,
                          deadline=deadline, cancelled=cancelled, labels_cache=labels_cache)
    times = list(range(start, end + 1, step))
    reader.set_deadline(evaluator.deadline)
    try:
        value = evaluator.eval(node, times)
    finally:
        reader.set_deadline(None)
    if isinstance(value, Scalar):
        series: list[tuple[Labels, list[float | None]]] = [((), list(value.values))]
    else:
        assert isinstance(value, Vector)
        series = sorted(((s.labels, s.values) for s in value.series), key=lambda s: s[0])
    result = []
    for labels, values in series:
        points = [[json_time(t), format_value(v)] for t, v in zip(times, values, strict=True)
                  if v is not None]
        if points:
            result.append({"metric": dict(labels), "values": points})
    return {"resultType": "matrix", "result": result}


def render_instant(value: Value, at: int) -> dict[str, Any]:
    stamp = json_time(at)
    if isinstance(value, Scalar):
        return {"resultType": "scalar", "result": [stamp, format_value(value.values[0])]}
    if isinstance(value, String):
        return {"resultType": "string", "result": [stamp, value.value]}
    if isinstance(value, Matrix):
        return {"resultType": "matrix", "result": [
            {"metric": dict(s.labels),
             "values": [[json_time(t), format_value(v)] for t, v in zip(s.times, s.values,
                                                                       strict=True)]}
            for s in value.series]}
    assert isinstance(value, Vector)
    return {"resultType": "vector", "result": [
        {"metric": dict(s.labels), "value": [stamp, format_value(s.values[0])]}
        for s in value.series if s.values[0] is not None]}
