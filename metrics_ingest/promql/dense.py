"""Range vectors as arrays: a selector's samples read into flat numpy arrays in one go, every
step's window of every series found at once (searchsorted over one sorted key), and the range
functions dashboards use most computed over all windows together. Each is the same IEEE
operations in the same order as range_functions.py, so the answers are those of the
per-window code bit for bit; a window whose answer needs a sequential sum (a counter reset
inside it) is handed to that code. The other functions get their windows from here as list
slices (no search per window)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import numpy.typing as npt

from metrics_ingest.promql.range_functions import RANGE_FUNCTIONS, Window
from metrics_ingest.promql.values import Labels, RangeSeries, Series, Vector, same_labelset

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]
CHUNK_CELLS = 1 << 21  # (series x steps) computed at once: bounds the arrays to ~16 MiB each


@dataclass(slots=True)
class Block:
    """Series' samples side by side: series i's are times[offsets[i]:offsets[i+1]] (ms,
    ascending) with their values, and `stale[i]` its staleness markers (ms). Every series
    has at least one sample."""

    labels: list[Labels]
    times: Ints
    values: Floats
    offsets: Ints
    stale: list[Sequence[int]]

    def range_series(self) -> list[RangeSeries]:
        """The series as lists, for the code that walks them one by one."""
        times, values = self.times.tolist(), self.values.tolist()
        bounds = self.offsets.tolist()
        return [RangeSeries(labels, times[bounds[i]:bounds[i + 1]],
                            values[bounds[i]:bounds[i + 1]], self.stale[i])
                for i, labels in enumerate(self.labels)]

    def part(self, first: int, last: int) -> Block:
        """Series [first, last) of the block (views, not copies)."""
        low, high = int(self.offsets[first]), int(self.offsets[last])
        return Block(self.labels[first:last], self.times[low:high], self.values[low:high],
                     self.offsets[first:last + 1] - low, self.stale[first:last])


def block_of(keys: Ints, values: Floats, start: int,
             selected: Sequence[tuple[int, Labels]], stale: dict[int, list[int]]) -> Block:
    """The block of the `selected` series (in that order) from the reader's sample arrays
    (keys series_id << 32 | timestamp - start, and values; each series' samples in time
    order); series without a sample are left out."""
    if not len(keys):
        empty = np.zeros(0, dtype=np.int64)
        return Block([], empty, np.zeros(0), np.zeros(1, dtype=np.int64), [])
    ids = np.array([series_id for series_id, _ in selected], dtype=np.int64)
    by_id = np.argsort(ids)
    position = by_id[np.searchsorted(ids[by_id], keys >> 32)]
    order = np.argsort(position, kind="stable")  # by series, time order kept within each
    counts = np.bincount(position, minlength=len(selected))
    kept = np.flatnonzero(counts)
    offsets = np.zeros(len(kept) + 1, dtype=np.int64)
    np.cumsum(counts[kept], out=offsets[1:])
    labels: list[Labels] = []
    markers: list[Sequence[int]] = []
    for index in kept.tolist():
        series_id, series_labels = selected[index]
        labels.append(series_labels)
        found = stale.get(series_id)
        markers.append([t * 1000 for t in found] if found else ())
    times = ((keys[order] & 0xFFFFFFFF) + start) * 1000
    return Block(labels, times, values[order], offsets, markers)


def windows(block: Block, moments: Ints, length: int) -> tuple[Ints, Ints]:
    """(lo, hi), each (series x steps): series i's window at step k is [lo, hi) of the
    block's arrays, the samples in [moments[k] - length, moments[k]] (both ends in)."""
    count = len(block.labels)
    sizes = np.diff(block.offsets)
    low = min(int(block.times.min()), int(moments.min()) - length)
    span = max(int(block.times.max()), int(moments.max())) - low + 1
    keys = np.repeat(np.arange(count, dtype=np.int64) * span, sizes) + (block.times - low)
    rows = (np.arange(count, dtype=np.int64) * span)[:, None]
    hi = np.searchsorted(keys, (rows + (moments - low)[None, :]).ravel(), "right")
    lo = np.searchsorted(keys, (rows + (moments - length - low)[None, :]).ravel(), "left")
    shape = (count, len(moments))
    starts, ends = block.offsets[:-1, None], block.offsets[1:, None]
    return (np.maximum(lo.reshape(shape), starts).astype(np.int64),
            np.minimum(hi.reshape(shape), ends).astype(np.int64))


@dataclass(slots=True)
class Dense:
    """An instant vector over the steps as arrays: values[i, k] counts where present[i, k]."""

    labels: list[Labels]
    values: Floats
    present: Bools


def after_previous(block: Block, test: Callable[[Floats, Floats], Bools]) -> Ints:
    """Running count of the samples j for which test(values[j], values[j - 1]) holds, j not
    a series' first: the count over (lo, hi) is marks[hi - 1] - marks[lo]."""
    values = block.values
    hit = np.zeros(len(values), dtype=np.int64)
    if len(values) > 1:
        hit[1:] = test(values[1:], values[:-1])
        hit[block.offsets[:-1]] = 0
    return np.cumsum(hit)


def extrapolated(block: Block, lo: Ints, hi: Ints, moments: Ints, length: int,
                 counter: bool, per_second: bool) -> tuple[Floats, Bools, Bools]:
    """rate, increase, delta (range_functions.extrapolated) at every window; the third
    array marks windows with a counter reset, left to the per-window code."""
    times, values = block.times, block.values
    n = hi - lo
    present = n >= 2
    first_at = np.where(present, lo, 0)
    last_at = np.where(present, hi - 1, 0)
    first, last = values[first_at], values[last_at]
    result = last - first
    if counter:
        resets = after_previous(block, np.less)
        sequential = present & (resets[last_at] - resets[first_at] > 0)
    else:
        sequential = np.zeros_like(present)
    with np.errstate(divide="ignore", invalid="ignore"):
        to_start = (times[first_at] - (moments - length)[None, :]) / 1000
        to_end = (moments[None, :] - times[last_at]) / 1000
        sampled = (times[last_at] - times[first_at]) / 1000
        average = sampled / (n - 1)
        if counter:
            to_zero = sampled * (first / result)
            to_start = np.where((result > 0) & (first >= 0), np.minimum(to_start, to_zero),
                                to_start)
        threshold = average * 1.1
        interval = sampled + np.where(to_start < threshold, to_start, average / 2)
        interval = interval + np.where(to_end < threshold, to_end, average / 2)
        factor = interval / sampled
        if per_second:
            factor = factor / (length / 1000)
        out = result * factor
    return out, present & ~sequential, sequential


def instant_value(block: Block, lo: Ints, hi: Ints, per_second: bool) -> tuple[Floats, Bools]:
    """irate and idelta: the last two points of every window."""
    present = hi - lo >= 2
    last_at = np.where(present, hi - 1, 0)
    previous_at = np.where(present, hi - 2, 0)
    last, previous = block.values[last_at], block.values[previous_at]
    interval = block.times[last_at] - block.times[previous_at]
    with np.errstate(divide="ignore", invalid="ignore"):
        if per_second:
            return np.where(last < previous, last, last - previous) / (interval / 1000), present
        return last - previous, present


def reduced(block: Block, lo: Ints, hi: Ints, reduce: np.ufunc) -> tuple[Floats, Bools]:
    """max/min over every non-empty window (stored values are never NaN)."""
    present = hi > lo
    out = np.zeros(lo.shape)
    if present.any():
        pairs = np.empty(2 * int(present.sum()), dtype=np.int64)
        pairs[0::2], pairs[1::2] = lo[present], hi[present]
        padded = np.append(block.values, 0.0)  # reduceat wants every index in range
        out[present] = reduce.reduceat(padded, pairs)[0::2]
    return out, present


def counted(block: Block, lo: Ints, hi: Ints, test: Callable[[Floats, Floats], Bools]
            ) -> tuple[Floats, Bools]:
    """changes and resets: how often test(value, previous) holds inside each window."""
    present = hi > lo
    marks = after_previous(block, test)
    last_at = np.where(present, hi - 1, 0)
    first_at = np.where(present, lo, 0)
    return (marks[last_at] - marks[first_at]).astype(np.float64), present


def vectorised(name: str, block: Block, lo: Ints, hi: Ints, moments: Ints, length: int
               ) -> tuple[Floats, Bools, Bools] | None:
    """(values, present, left to the per-window code) of a range function over every
    window, or None when it has no array form."""
    nothing = np.zeros(lo.shape, dtype=np.bool_)
    if name in ("rate", "increase", "delta"):
        return extrapolated(block, lo, hi, moments, length, name != "delta", name == "rate")
    if name in ("irate", "idelta"):
        return (*instant_value(block, lo, hi, name == "irate"), nothing)
    n = hi - lo
    if name == "count_over_time":
        return n.astype(np.float64), n > 0, nothing
    if name == "present_over_time":
        return np.ones(lo.shape), n > 0, nothing
    if name == "last_over_time":
        return block.values[np.where(n > 0, hi - 1, 0)], n > 0, nothing
    if name in ("max_over_time", "min_over_time"):
        return (*reduced(block, lo, hi, np.maximum if name[:3] == "max" else np.minimum),
                nothing)
    if name == "changes":
        return (*counted(block, lo, hi, np.not_equal), nothing)
    if name == "resets":
        return (*counted(block, lo, hi, np.less), nothing)
    return None


def per_window(name: str, block: Block, lo: Ints, hi: Ints, moments: Ints, length: int,
               times: Sequence[int], scalars: Sequence[Sequence[float]],
               cells: Bools | None = None) -> tuple[list[list[float | None]], list[int]]:
    """The range function window by window (all cells, or those marked in `cells`): each
    series' values over the steps (None: no sample), and its longest window."""
    function = RANGE_FUNCTIONS[name]
    all_times, all_values = block.times.tolist(), block.values.tolist()
    los, his, ends = lo.tolist(), hi.tolist(), moments.tolist()
    wanted = None if cells is None else cells.tolist()
    out: list[list[float | None]] = []
    held: list[int] = []
    for i in range(len(block.labels)):
        values: list[float | None] = []
        longest = 0
        for k, end in enumerate(ends):
            low, high = los[i][k], his[i][k]
            if (wanted is not None and not wanted[i][k]) or high <= low:
                values.append(None)
                continue
            longest = max(longest, high - low)
            values.append(function(Window(all_times[low:high], all_values[low:high],
                                          end - length, end, times[k],
                                          [column[k] for column in scalars])))
        out.append(values)
        held.append(longest)
    return out, held


def merged(dense: Dense) -> Dense:
    """Series with equal labels made one (values.merge): two with a value at the same step
    is Prometheus's "same labelset" error."""
    rows: dict[Labels, list[int]] = {}
    for index, labels in enumerate(dense.labels):
        rows.setdefault(labels, []).append(index)
    if len(rows) == len(dense.labels):
        return dense
    values = np.zeros((len(rows), dense.values.shape[1]))
    present = np.zeros(values.shape, dtype=np.bool_)
    for out, indexes in enumerate(rows.values()):
        held = dense.present[indexes]
        if (held.sum(axis=0) > 1).any():
            raise same_labelset()
        pick = held.argmax(axis=0)
        columns = np.arange(values.shape[1])
        values[out] = dense.values[indexes][pick, columns]
        present[out] = held.any(axis=0)
    return Dense(list(rows), values, present)


def to_vector(dense: Dense) -> Vector:
    """The arrays as the evaluator's lists (None where absent); series never present are
    left out."""
    cells = dense.values.astype(object)
    cells[~dense.present] = None
    rows: list[list[float | None]] = cells.tolist()
    kept = cast(list[bool], dense.present.any(axis=1).tolist())
    return Vector([Series(labels, row) for labels, row, keep
                   in zip(dense.labels, rows, kept, strict=True) if keep])
