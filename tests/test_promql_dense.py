"""The range functions over arrays (promql/dense.py) answer what the window-by-window code
(promql/range_functions.py) answers, bit for bit, and the array aggregations what the
per-step ones do: random counters and gauges with resets, gaps and irregular times, at
windows that hold nothing, one point, or many."""

from __future__ import annotations

import math
import random
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from metrics_ingest import promql
from metrics_ingest.promql import aggregations, calls, dense
from metrics_ingest.promql.range_functions import RANGE_FUNCTIONS, Window
from metrics_ingest.promql.values import Labels, RangeSeries
from metrics_ingest.store import open_store
from metrics_ingest.store.sample_arrays import arrays_of_pairs

VECTORISED = ["rate", "increase", "delta", "irate", "idelta", "count_over_time",
              "present_over_time", "last_over_time", "max_over_time", "min_over_time",
              "changes", "resets"]


def random_block(seed: int) -> tuple[dense.Block, list[int]]:
    rng = random.Random(seed)
    selected: list[tuple[int, Labels]] = []
    pairs: list[tuple[int, int, float]] = []
    for series_id in range(1, 9):
        selected.append((series_id, (("n", str(series_id)),)))
        value = rng.uniform(-5, 50)
        t = 1000 + rng.randrange(40)
        while t < 2400:
            if rng.random() < 0.02:
                t += rng.randrange(100, 400)  # a gap longer than some windows
                continue
            value += rng.choice((0.0, 1.0, 2.5, rng.uniform(0, 7)))
            if rng.random() < 0.01:
                value = rng.uniform(0, 3)  # a counter reset
            pairs.append((t, series_id, round(value, rng.choice((0, 3, 9)))))
            t += rng.choice((1, 5, 10, 15, 17, 30))
    pairs.sort()
    start = 1000
    packed = [((series_id << 32) + (t - start), v) for t, series_id, v in pairs]
    moments = sorted(rng.sample(range(1000_000, 2500_000, 250), 40))
    return dense.block_of(*arrays_of_pairs(packed), start, selected, {}), moments


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("length", [1000, 15_000, 60_000, 300_000])
def test_array_range_functions_equal_the_window_code(seed: int, length: int) -> None:
    block, moments = random_block(seed)
    ends = np.array(moments, dtype=np.int64)
    lo, hi = dense.windows(block, ends, length)
    for name in VECTORISED:
        computed = dense.vectorised(name, block, lo, hi, ends, length)
        assert computed is not None
        values, present, sequential = computed
        for i, series in enumerate(block.range_series()):
            for k, end in enumerate(moments):
                inside = [(t, v) for t, v in zip(series.times, series.values, strict=True)
                          if end - length <= t <= end]
                want = None
                if inside:
                    want = RANGE_FUNCTIONS[name](Window(
                        [t for t, _ in inside], [v for _, v in inside], end - length, end,
                        end, []))
                if sequential[i, k]:
                    continue  # left to the window code by design
                got = float(values[i, k]) if present[i, k] else None
                assert (got is None) == (want is None), (name, i, k)
                if want is not None and got is not None:
                    assert got == want or (math.isnan(got) and math.isnan(want)), (
                        name, i, k, got, want)
                    assert math.copysign(1, got) == math.copysign(1, want)


@pytest.mark.parametrize("op", sorted(aggregations.DENSE_AGGREGATIONS))
@pytest.mark.parametrize("steps", [1, 40])
def test_array_aggregations_equal_the_per_step_code(op: str, steps: int) -> None:
    rng = random.Random(steps)
    labels = [(("a", str(i % 3)), ("b", str(i))) for i in range(12)]
    values = np.array([[rng.uniform(-1e6, 1e6) for _ in range(steps)] for _ in labels])
    present = np.array([[rng.random() < 0.7 for _ in range(steps)] for _ in labels])
    got = aggregations.aggregate_dense(op, dense.Dense(labels, values, present),
                                       frozenset({"a"}), False)
    assert got is not None
    for k in range(steps):
        samples = [(labels[i], float(values[i, k])) for i in range(len(labels))
                   if present[i, k]]
        keys = [aggregations.grouping(s[0], frozenset({"a"}), False) for s in samples]
        want = dict(aggregations.aggregate(op, samples, keys, None))
        have = {s.labels: s.values[k] for s in got if s.values[k] is not None}
        assert have == want


def test_series_with_nothing_in_range_are_left_out() -> None:
    block = dense.block_of(*arrays_of_pairs([((2 << 32) + 5, 1.0)]), 100,
                           [(1, (("n", "1"),)), (2, (("n", "2"),))], {})
    assert block.labels == [(("n", "2"),)]
    assert block.range_series() == [RangeSeries((("n", "2"),), [105_000], [1.0], ())]


def test_an_answer_too_big_for_arrays_takes_the_window_code(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(tmp_path / "m.db")
    store.migrate()
    with sqlite3.connect(tmp_path / "m.db") as db:
        db.executemany("INSERT INTO series (id, metric_name, source, labels) VALUES (?, ?, ?, ?)",
                       [(i, "c", f"s{i % 3}", f'{{"n":"{i}"}}') for i in range(1, 7)])
        db.executemany("INSERT INTO samples VALUES (?, ?, ?)",
                       [(t, i, float(t * i % 97)) for t in range(1000, 4600, 15)
                        for i in range(1, 7)])
        db.executemany("INSERT INTO latest (series_id, timestamp, value) VALUES (?, 4590, 0)",
                       [(i,) for i in range(1, 7)])
    db.close()
    reader = store.open_query_reader()
    query = "sum by (source) (rate(c[5m]))"

    def answer() -> dict[str, object]:
        return promql.range_query(reader, query, 1_500_000, 4_500_000, 30_000,
                                  max_samples=10**9, deadline=time.monotonic() + 30)

    arrays = answer()
    monkeypatch.setattr(calls, "MAX_DENSE_CELLS", 0)
    assert answer() == arrays
    assert len(arrays["result"]) == 3  # type: ignore[arg-type]
