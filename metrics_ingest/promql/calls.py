"""Function calls: range functions over each series' windows, instant functions step by
step, and the special cases of Prometheus's engine (`timestamp` of a selector,
`absent`/`absent_over_time` labels, `last_over_time` keeping the name)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import promql_parser as pp

from metrics_ingest.promql import functions
from metrics_ingest.promql.dense import (
    CHUNK_CELLS,
    Dense,
    merged,
    per_window,
    to_vector,
    vectorised,
    windows,
)
from metrics_ingest.promql.range_functions import RANGE_ARGUMENT, RANGE_FUNCTIONS, Window
from metrics_ingest.promql.selectors import selector_matchers, window
from metrics_ingest.promql.tree import unwrap
from metrics_ingest.promql.values import (
    NAME,
    Labels,
    Scalar,
    Series,
    String,
    Unsupported,
    Value,
    Vector,
    drop_name,
    merge,
    step_samples,
)

if TYPE_CHECKING:
    from metrics_ingest.promql.engine import Evaluator

# Series x steps above which an answer is not made as arrays (160 MB of values, allocated
# before any is counted): the window code counts series by series and stops at the limit.
MAX_DENSE_CELLS = 20_000_000
# Native-histogram functions: metrics-ingest stores no native histograms, so they select
# nothing, as Prometheus's do for float samples.
NATIVE_HISTOGRAM = frozenset({"histogram_count", "histogram_sum", "histogram_fraction"})


def evaluate_call(ev: Evaluator, node: pp.Call, times: list[int]) -> Value:
    name = node.func.name
    args = list(node.args)
    if name in RANGE_FUNCTIONS:
        return range_call(ev, name, args, times)
    if name == "absent_over_time":
        return absent_over_time(ev, args[0], times)
    if name == "time":
        return Scalar([t / 1000 for t in times])
    if name == "pi":
        return Scalar([math.pi] * len(times))
    if name == "vector":
        return Vector([Series((), list(ev.scalar(args[0], times)))])
    if name == "scalar":
        vec = ev.vector(args[0], times)
        out = []
        for step in range(len(times)):
            samples, _ = step_samples(vec.series, step)
            out.append(samples[0][1] if len(samples) == 1 else math.nan)
        return Scalar(out)
    if name == "timestamp":
        return timestamp(ev, args[0], times)
    if name in functions.DATE_FUNCTIONS and not args:
        return Vector([Series((), [functions.date_part(name, t // 1000) for t in times])])
    if name == "absent":
        return absent(ev, args[0], times)
    if name in NATIVE_HISTOGRAM:
        for arg in args:
            ev.eval(arg, times)
        return Vector([])
    if name == "label_replace":
        dst, replacement, src, regex = (string_arg(ev, arg, times) for arg in args[1:5])
        pattern = functions.compile_replace(dst, regex)
        vec = ev.vector(args[0], times)
        relabel = {s.labels: functions.label_replace([(s.labels, 0.0)], dst, replacement,
                                                     src, pattern)[0][0] for s in vec.series}
        return Vector(merge([Series(relabel[s.labels], s.values) for s in vec.series]))
    if name == "label_join":
        dst, separator, *sources = (string_arg(ev, arg, times) for arg in args[1:])
        functions.check_join(dst, sources)
        vec = ev.vector(args[0], times)
        return Vector(merge([
            Series(functions.label_join([(s.labels, 0.0)], dst, separator, sources)[0][0],
                   s.values) for s in vec.series]))
    if name in ("sort", "sort_desc"):
        vec = ev.vector(args[0], times)
        if len(times) == 1:  # only an instant query's result has an order
            order = functions.sort_samples(
                [(s.labels, s.values[0]) for s in vec.series if s.values[0] is not None],
                name == "sort_desc")
            by_labels = {s.labels: s for s in vec.series}
            return Vector([by_labels[labels] for labels, _ in order])
        return vec
    if name == "histogram_quantile":
        return histogram_quantile(ev, args, times)
    return elementwise(ev, name, args, times)


def string_arg(ev: Evaluator, node: pp.Expr, times: list[int]) -> str:
    value = ev.eval(node, times)
    assert isinstance(value, String)
    return value.value


def range_dense(ev: Evaluator, name: str, args: list[pp.Expr], times: list[int]
                ) -> Dense | None:
    """A range function of a selector's windows, as arrays (dense.py), series by series in
    chunks (each chunk counted against the sample limit); None when the range is a
    subquery's, or its answer would take more than MAX_DENSE_CELLS."""
    position = RANGE_ARGUMENT.get(name, 0)
    argument = unwrap(args[position])
    if not isinstance(argument, pp.MatrixSelector):
        return None
    scalars = [ev.scalar(arg, times) for i, arg in enumerate(args) if i != position]
    block, moments, length = ev.matrix_block(argument, times)
    ends = np.array(moments, dtype=np.int64)
    count = len(block.labels)
    if count * len(times) > MAX_DENSE_CELLS:
        return None  # the window code, which counts (and stops) as it goes
    values = np.zeros((count, len(times)))
    present = np.zeros(values.shape, dtype=np.bool_)
    step = max(1, CHUNK_CELLS // max(1, len(times)))
    for first in range(0, count, step):
        ev.check()
        last = min(count, first + step)
        part = block.part(first, last)
        lo, hi = windows(part, ends, length)
        computed = None if scalars else vectorised(name, part, lo, hi, ends, length)
        if computed is None:
            rows, _ = per_window(name, part, lo, hi, ends, length, times, scalars)
            got = np.array([[v is not None for v in row] for row in rows], dtype=np.bool_)
            present[first:last] = got
            values[first:last][got] = [v for row in rows for v in row if v is not None]
        else:
            chunk_values, chunk_present, sequential = computed
            values[first:last], present[first:last] = chunk_values, chunk_present
            if sequential.any():
                rows, _ = per_window(name, part, lo, hi, ends, length, times, scalars,
                                     sequential)
                for i, k in zip(*np.nonzero(sequential), strict=True):
                    value = rows[i][k]
                    if value is not None:
                        values[first + i, k] = value
                        present[first + i, k] = True
        # What the per-window code counts: each series' steps with a value and (when it
        # has one) its longest window.
        steps = present[first:last].sum(axis=1)
        longest = (hi - lo).max(axis=1, initial=0)
        ev.count(int(steps.sum() + longest[steps > 0].sum()))
    if name == "last_over_time":  # (keeps the name: distinct series, distinct labels)
        return Dense(block.labels, values, present)
    labels = [drop_name(labels) for labels in block.labels]
    firsts = {labels[0] for labels in block.labels if labels}
    if len(firsts) == 1 and next(iter(firsts))[0] == NAME:  # one name (it sorts first)
        return Dense(labels, values, present)  # the rest of the labels tell them apart
    return merged(Dense(labels, values, present))


def range_call(ev: Evaluator, name: str, args: list[pp.Expr], times: list[int]) -> Vector:
    dense = range_dense(ev, name, args, times)
    if dense is not None:
        return to_vector(dense)
    position = RANGE_ARGUMENT.get(name, 0)
    scalars = [ev.scalar(arg, times) for i, arg in enumerate(args) if i != position]
    ranges, moments, length = ev.ranges(args[position], times)
    function = RANGE_FUNCTIONS[name]
    out = []
    for index, series in enumerate(ranges):
        if index % 64 == 0:
            ev.check()
        values: list[float | None] = []
        held = 0
        for step, end in enumerate(moments):
            start = end - length
            points, point_values = window(series, start, end)
            if not points:
                values.append(None)
                continue
            held = max(held, len(points))
            values.append(function(Window(points, point_values, start, end, times[step],
                                          [column[step] for column in scalars])))
        present = len(values) - values.count(None)
        if present:
            ev.count(present + held)
            labels = series.labels if name == "last_over_time" else drop_name(series.labels)
            out.append(Series(labels, values))
    return Vector(merge(out))


def absent_labels(node: pp.Expr) -> Labels:
    node = unwrap(node)
    if isinstance(node, pp.MatrixSelector):
        node = node.vector_selector
    if not isinstance(node, pp.VectorSelector):
        return ()
    return functions.absent_labels([(m.name, m.op, m.value) for m in selector_matchers(node)])


def absent(ev: Evaluator, arg: pp.Expr, times: list[int]) -> Vector:
    vec = ev.vector(arg, times)
    values: list[float | None] = [
        None if any(s.values[step] is not None for s in vec.series) else 1.0
        for step in range(len(times))]
    if all(v is None for v in values):
        return Vector([])
    return Vector([Series(absent_labels(arg), values)])


def absent_over_time(ev: Evaluator, arg: pp.Expr, times: list[int]) -> Vector:
    ranges, moments, length = ev.ranges(arg, times)
    values: list[float | None] = []
    for end in moments:
        found = any(window(series, end - length, end)[0] for series in ranges)
        values.append(None if found else 1.0)
    if all(v is None for v in values):
        return Vector([])
    return Vector([Series(absent_labels(arg), values)])


def timestamp(ev: Evaluator, arg: pp.Expr, times: list[int]) -> Vector:
    """A selector's samples' own timestamps; any other vector's, the step's time."""
    vec = ev.vector(arg, times)
    direct = isinstance(unwrap(arg), pp.VectorSelector)
    out = []
    for s in vec.series:
        own = s.times if direct else None
        values: list[float | None] = []
        for step, value in enumerate(s.values):
            stamp = own[step] if own is not None else None
            values.append(None if value is None
                          else (times[step] if stamp is None else stamp) / 1000)
        out.append(Series(drop_name(s.labels), values))
    return Vector(merge(out))


def histogram_quantile(ev: Evaluator, args: list[pp.Expr], times: list[int]) -> Vector:
    q = ev.scalar(args[0], times)
    vec = ev.vector(args[1], times)
    out: list[Series] = []
    by_signature: dict[Labels, Series] = {}
    for step in range(len(times)):
        samples, _ = step_samples(vec.series, step)
        for labels, value in functions.histogram_quantile(q[step], samples):
            held = by_signature.get(labels)
            if held is None:
                held = by_signature[labels] = Series(labels, [None] * len(times))
                out.append(held)
            held.values[step] = value
    return Vector(merge(out))


def elementwise(ev: Evaluator, name: str, args: list[pp.Expr], times: list[int]) -> Vector:
    """Functions applied to each sample alone; they drop the metric name."""
    if name in functions.SIMPLE:
        apply = functions.SIMPLE[name]
        return mapped(ev.vector(args[0], times), lambda v, _: apply(v))
    if name in functions.DATE_FUNCTIONS:
        return mapped(ev.vector(args[0], times), lambda v, _: functions.date_part(name, v))
    if name == "round":
        nearest = ev.scalar(args[1], times) if len(args) > 1 else [1.0] * len(times)
        return mapped(ev.vector(args[0], times),
                      lambda v, step: functions.go_round(v, nearest[step]))
    if name == "clamp":
        low, high = ev.scalar(args[1], times), ev.scalar(args[2], times)
        return mapped(ev.vector(args[0], times),
                      lambda v, step: None if high[step] < low[step]
                      else go_max(low[step], go_min(high[step], v)))
    if name == "clamp_max":
        high = ev.scalar(args[1], times)
        return mapped(ev.vector(args[0], times), lambda v, step: go_min(high[step], v))
    if name == "clamp_min":
        low = ev.scalar(args[1], times)
        return mapped(ev.vector(args[0], times), lambda v, step: go_max(low[step], v))
    raise Unsupported(f"the function {name}()")


def go_min(a: float, b: float) -> float:
    return math.nan if math.isnan(a) or math.isnan(b) else min(a, b)


def go_max(a: float, b: float) -> float:
    return math.nan if math.isnan(a) or math.isnan(b) else max(a, b)


def mapped(vec: Vector, apply: object) -> Vector:
    out = []
    for s in vec.series:
        values = [None if v is None else apply(v, step)  # type: ignore[operator]
                  for step, v in enumerate(s.values)]
        if any(v is not None for v in values):
            out.append(Series(drop_name(s.labels), values))
    return Vector(merge(out))
