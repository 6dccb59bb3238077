"""Aggregation operators over one step's samples, as Prometheus 2.42's engine aggregates:
groups in order of first appearance, its running mean and Welford variance, and its heaps
for topk/bottomk (Go's container/heap, so ties and NaN pick the same series)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from metrics_ingest.promql.dense import Dense
from metrics_ingest.promql.functions import LABEL_NAME_RE
from metrics_ingest.promql.range_functions import quantile
from metrics_ingest.promql.values import (
    NAME,
    ExecutionError,
    Labels,
    Series,
    format_label_value,
    with_label,
)

Sample = tuple[Labels, float]
Less = Callable[[Sample, Sample], bool]
MAX_INT64 = 9.223372036854775807e18


def grouping(labels: Labels, names: frozenset[str], without: bool) -> Labels:
    """The group a series falls in, which is also the labels of the group's result."""
    if without:
        return tuple(pair for pair in labels if pair[0] not in names and pair[0] != NAME)
    return tuple(pair for pair in labels if pair[0] in names)


def top_less(a: Sample, b: Sample) -> bool:
    return math.isnan(a[1]) or a[1] < b[1]


def bottom_less(a: Sample, b: Sample) -> bool:
    return math.isnan(a[1]) or a[1] > b[1]


def heap_up(heap: list[Sample], j: int, less: Less) -> None:
    while j > 0:
        i = (j - 1) // 2
        if not less(heap[j], heap[i]):
            break
        heap[i], heap[j] = heap[j], heap[i]
        j = i


def heap_down(heap: list[Sample], i: int, n: int, less: Less) -> None:
    while True:
        j = 2 * i + 1
        if j >= n:
            break
        if j + 1 < n and less(heap[j + 1], heap[j]):
            j += 1
        if not less(heap[j], heap[i]):
            break
        heap[i], heap[j] = heap[j], heap[i]
        i = j


def heap_push(heap: list[Sample], item: Sample, less: Less) -> None:
    heap.append(item)
    heap_up(heap, len(heap) - 1, less)


def heap_pop(heap: list[Sample], less: Less) -> None:
    n = len(heap) - 1
    heap[0], heap[n] = heap[n], heap[0]
    heap_down(heap, 0, n, less)
    heap.pop()


def k_of(param: float) -> int:
    if not -MAX_INT64 <= param <= MAX_INT64:
        raise ExecutionError(f"Scalar value {param:g} overflows int64")
    return int(param)


def select_k(samples: Sequence[Sample], keys: Sequence[Labels], k: int, top: bool
             ) -> list[Sample]:
    """topk / bottomk: the k highest (lowest) of each group, best first, NaN last."""
    if k < 1:
        return []
    less = top_less if top else bottom_less
    heaps: dict[Labels, list[Sample]] = {}
    for sample, key in zip(samples, keys, strict=True):
        heap = heaps.get(key)
        if heap is None:
            heaps[key] = [sample]
            continue
        worst = heap[0][1]
        better = worst < sample[1] if top else worst > sample[1]
        if len(heap) < k or better or math.isnan(worst):
            if len(heap) == k:
                if k == 1:
                    heap[0] = sample
                    continue
                heap_pop(heap, less)
            heap_push(heap, sample, less)
    out: list[Sample] = []
    for heap in heaps.values():
        numbers = [s for s in heap if not math.isnan(s[1])]
        numbers.sort(key=lambda s: s[1], reverse=top)
        out += numbers + [s for s in heap if math.isnan(s[1])]
    return out


class Group:
    __slots__ = ("count", "mean", "value", "values")

    def __init__(self, value: float) -> None:
        self.value = value
        self.mean = value
        self.count = 1
        self.values = [value]


def aggregate(op: str, samples: Sequence[Sample], keys: Sequence[Labels],
              param: float | str | None) -> list[Sample]:
    """One step of `op` over samples whose groups are `keys` (the result labels)."""
    if op in ("topk", "bottomk"):
        assert isinstance(param, float)
        return select_k(samples, keys, k_of(param), op == "topk")
    groups: dict[Labels, Group] = {}
    for (_, value), key in zip(samples, keys, strict=True):
        group = groups.get(key)
        if group is None:
            group = groups[key] = Group(value)
            if op in ("stddev", "stdvar"):
                group.value = 0.0
            elif op == "group":
                group.value = 1.0
            continue
        if op == "sum":
            group.value += value
        elif op == "avg":
            group.count += 1
            mean = group.mean
            if math.isinf(mean) and (
                    (math.isinf(value) and (mean > 0) == (value > 0))
                    or (not math.isinf(value) and not math.isnan(value))):
                continue
            group.mean += value / group.count - mean / group.count
        elif op == "max":
            if group.value < value or math.isnan(group.value):
                group.value = value
        elif op == "min":
            if group.value > value or math.isnan(group.value):
                group.value = value
        elif op in ("count", "count_values"):
            group.count += 1
        elif op in ("stddev", "stdvar"):
            group.count += 1
            delta = value - group.mean
            group.mean += delta / group.count
            group.value += delta * (value - group.mean)
        elif op == "quantile":
            group.values.append(value)
    out: list[Sample] = []
    for key, group in groups.items():
        if op == "avg":
            result = group.mean
        elif op in ("count", "count_values"):
            result = float(group.count)
        elif op == "stdvar":
            result = group.value / group.count
        elif op == "stddev":
            result = math.sqrt(group.value / group.count)
        elif op == "quantile":
            assert isinstance(param, float)
            result = quantile(param, group.values)
        else:
            result = group.value
        out.append((key, result))
    return out


def count_values_keys(samples: Sequence[Sample], label: str, names: frozenset[str],
                      without: bool) -> list[Labels]:
    """count_values' groups: the value written into `label`, then grouped as usual (`by`
    groups by the label too)."""
    if not LABEL_NAME_RE.fullmatch(label):
        raise ExecutionError(f'invalid label name "{label}"')
    wanted = names if without else names | {label}
    return [grouping(with_label(labels, label, format_label_value(value)), wanted, without)
            for labels, value in samples]


AGGREGATIONS = frozenset({"sum", "avg", "min", "max", "count", "group", "stddev", "stdvar",
                          "topk", "bottomk", "quantile", "count_values"})


DENSE_AGGREGATIONS = frozenset({"sum", "count", "min", "max", "group"})
ROW_AT_A_TIME = 32  # steps from which a series at a time beats np.add.at over every sample


def aggregate_dense(op: str, dense: Dense, names: frozenset[str], without: bool
                    ) -> list[Series] | None:
    """`op` over every step of arrays at once (np.add.at and its kin apply each series in
    order, as the per-step code does): the groups, in order of first appearance. None when
    a value is NaN or -0 (where the ufuncs' answers could differ from the per-step code's)."""
    values, present = dense.values, dense.present
    held = values[present]
    if np.isnan(held).any() or (np.signbit(held) & (held == 0)).any():
        return None
    index: dict[Labels, int] = {}
    groups = [index.setdefault(grouping(labels, names, without), len(index))
              for labels in dense.labels]
    member = np.array(groups, dtype=np.int64)
    shape = (len(index), values.shape[1])
    counts = np.zeros(shape)
    start = {"sum": -0.0, "max": -np.inf, "min": np.inf}.get(op, 0.0)  # -0 + x is x, for all x
    out = np.full(shape, start)
    if shape[1] >= ROW_AT_A_TIME:  # many steps: a series at a time, over all its steps
        combine = {"sum": np.add, "max": np.maximum, "min": np.minimum}.get(op)
        for series, group in enumerate(groups):
            held_at = present[series]
            counts[group] += held_at
            if combine is not None:
                out[group, held_at] = combine(out[group, held_at], values[series, held_at])
    else:  # few steps (an instant query): every sample at once, series by series in order
        rows, columns = np.nonzero(present)
        cells = (member[rows], columns)
        np.add.at(counts, cells, 1.0)
        if op == "sum":
            np.add.at(out, cells, values[rows, columns])
        elif op == "max":
            np.maximum.at(out, cells, values[rows, columns])
        elif op == "min":
            np.minimum.at(out, cells, values[rows, columns])
    if op == "count":
        out = counts
    elif op == "group":
        out = np.ones(shape)
    found = counts > 0
    # A group's place: the first step any of its series has a value, then that series.
    first_step = np.where(present.any(axis=1), present.argmax(axis=1), shape[1])
    order = np.full(len(index), np.iinfo(np.int64).max)
    np.minimum.at(order, member, first_step * len(groups) + np.arange(len(groups)))
    keys = list(index)
    cells_out = out.astype(object)
    cells_out[~found] = None
    lists: list[list[float | None]] = cells_out.tolist()
    return [Series(keys[g], lists[g]) for g in np.argsort(order, kind="stable").tolist()
            if found[g].any()]
