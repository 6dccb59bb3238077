"""The evaluator: walks promql_parser's tree over a list of evaluation times (one for an
instant query, the steps of a range query, a subquery's grid), reading samples through the
store's QueryReader, counting what it holds against the sample limit and checking the
deadline as it goes."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import timedelta

import promql_parser as pp

from metrics_ingest.promql import aggregations, binary
from metrics_ingest.promql.calls import evaluate_call, range_dense
from metrics_ingest.promql.dense import Block, Dense, to_vector
from metrics_ingest.promql.operands import negate, vector_matching, with_scalar
from metrics_ingest.promql.range_functions import RANGE_FUNCTIONS
from metrics_ingest.promql.selectors import (
    LOOKBACK_MS,
    LabelsCache,
    Matcher,
    at_step,
    read_block,
    select,
    selector_matchers,
    window,
)
from metrics_ingest.promql.tree import at_ms, ms, unwrap
from metrics_ingest.promql.values import (
    Labels,
    Matrix,
    QueryCanceled,
    QueryTimeout,
    RangeSeries,
    Scalar,
    Series,
    String,
    Unsupported,
    Value,
    Vector,
    same_labelset,
    step_samples,
    too_many_samples,
)
from metrics_ingest.store import QueryReader, StorageError

SUBQUERY_STEP_MS = 60_000  # a subquery without a step: Prometheus's default evaluation_interval


class Evaluator:
    """One query's evaluation. `start` and `end` (ms) are what `@ start()` and `@ end()`
    mean; `deadline` is a time.monotonic() value."""

    def __init__(self, reader: QueryReader, start: int, end: int, *, max_samples: int,
                 deadline: float | None, lookback: int = LOOKBACK_MS,
                 cancelled: Callable[[], bool] = lambda: False,
                 labels_cache: LabelsCache | None = None) -> None:
        self.reader = reader
        self.labels_cache = labels_cache or LabelsCache()
        self.cancelled = cancelled
        self.start = start
        self.end = end
        self.max_samples = max_samples
        self.deadline = deadline
        self.lookback = lookback
        self.samples = 0

    def check(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise QueryTimeout()
        if self.cancelled():
            raise QueryCanceled()

    def count(self, samples: int) -> None:
        """Samples now held: past the limit, the query ends with Prometheus's error."""
        self.samples += samples
        if self.samples > self.max_samples:
            raise too_many_samples()

    def read_block(self, matchers: Sequence[Matcher], first: int, last: int) -> Block:
        """The selected series' samples in [first, last] (ms) as arrays."""
        try:
            selected = select(self.reader, matchers, first // 1000, self.labels_cache)
            self.check()
            return read_block(self.reader, selected, first, last)
        except StorageError:
            self.check()  # an interrupted read is the deadline's doing
            raise

    def read(self, matchers: Sequence[Matcher], first: int, last: int) -> list[RangeSeries]:
        return self.read_block(matchers, first, last).range_series()

    def matrix_block(self, node: pp.MatrixSelector, times: list[int]
                     ) -> tuple[Block, list[int], int]:
        """A range selector's samples as arrays, where each step's window ends, and the
        windows' length (ms)."""
        selector = node.vector_selector
        length = ms(node.range)
        moments = self.moments(selector.at, selector.offset, times)
        block = self.read_block(selector_matchers(selector), min(moments) - length,
                                max(moments))
        return block, moments, length

    def moments(self, at: pp.AtModifier | None, offset: timedelta | None,
                times: Sequence[int]) -> list[int]:
        """Where a selector looks at each step: `@` pins it, `offset` moves it back."""
        back = ms(offset)
        if at is None:
            return [t - back for t in times]
        kind = str(at.type)
        if kind.endswith("Start"):
            pinned = self.start
        elif kind.endswith("End"):
            pinned = self.end
        else:
            assert at.at is not None
            pinned = at_ms(at.at)
        return [pinned - back] * len(times)

    def eval(self, node: pp.Expr, times: list[int]) -> Value:
        self.check()
        if isinstance(node, pp.ParenExpr):
            return self.eval(node.expr, times)
        if isinstance(node, pp.NumberLiteral):
            return Scalar([node.val] * len(times))
        if isinstance(node, pp.StringLiteral):
            return String(node.val)
        if isinstance(node, pp.VectorSelector):
            return self.vector_selector(node, times)
        if isinstance(node, pp.UnaryExpr):
            return negate(self.eval(node.expr, times))
        if isinstance(node, pp.MatrixSelector | pp.SubqueryExpr):  # an instant query's result
            ranges, moments, length = self.ranges(node, times)
            end = moments[0]
            points = [(s.labels, window(s, end - length, end)) for s in ranges]
            return Matrix([RangeSeries(labels, list(ts), list(vs))
                           for labels, (ts, vs) in points if ts])
        if isinstance(node, pp.Call):
            return evaluate_call(self, node, times)
        if isinstance(node, pp.AggregateExpr):
            return self.aggregate(node, times)
        if isinstance(node, pp.BinaryExpr):
            return self.binary(node, times)
        raise Unsupported(type(node).__name__)

    def vector(self, node: pp.Expr, times: list[int]) -> Vector:
        value = self.eval(node, times)
        assert isinstance(value, Vector)
        return value

    def scalar(self, node: pp.Expr, times: list[int]) -> list[float]:
        value = self.eval(node, times)
        assert isinstance(value, Scalar)
        return value.values

    def vector_selector(self, node: pp.VectorSelector, times: list[int]) -> Vector:
        moments = self.moments(node.at, node.offset, times)
        ranges = self.read(selector_matchers(node), min(moments) - self.lookback, max(moments))
        out = []
        for index, series in enumerate(ranges):
            if index % 256 == 0:
                self.check()
            values, stamps = at_step(series, moments, self.lookback)
            present = len(values) - values.count(None)
            if present:
                self.count(present)
                out.append(Series(series.labels, values, stamps))
        return Vector(out)

    def ranges(self, node: pp.Expr, times: list[int]) -> tuple[list[RangeSeries], list[int], int]:
        """A range vector argument: its series' points, where each step's window ends, and
        the windows' length (ms)."""
        node = unwrap(node)
        if isinstance(node, pp.MatrixSelector):
            block, moments, length = self.matrix_block(node, times)
            return block.range_series(), moments, length
        assert isinstance(node, pp.SubqueryExpr)
        length = ms(node.range)
        step = ms(node.step) or SUBQUERY_STEP_MS
        moments = self.moments(node.at, node.offset, times)
        first = -(-(min(moments) - length) // step) * step
        grid = list(range(first, max(moments) + 1, step))
        inner = self.vector(node.expr, grid) if grid else Vector([])
        ranges = []
        for series in inner.series:
            present = [(grid[i], v) for i, v in enumerate(series.values) if v is not None]
            ranges.append(RangeSeries(series.labels, [t for t, _ in present],
                                      [v for _, v in present]))
        return ranges, moments, length

    def aggregate(self, node: pp.AggregateExpr, times: list[int]) -> Vector:
        op = str(node.op)
        if op not in aggregations.AGGREGATIONS:
            raise Unsupported(f"the {op} aggregation")
        names: frozenset[str] = frozenset()
        without = False
        if node.modifier is not None:
            names = frozenset(node.modifier.labels)
            without = str(node.modifier.type).endswith("Without")
        param: list[float] | str | None = None
        if op == "count_values":
            assert node.param is not None
            label = self.eval(node.param, times)
            assert isinstance(label, String)
            param = label.value
        elif node.param is not None:
            param = self.scalar(node.param, times)
        dense = self.dense(node.expr, times) if op in aggregations.DENSE_AGGREGATIONS else None
        if dense is not None:
            done = aggregations.aggregate_dense(op, dense, names, without)
            if done is not None:
                self.count(sum(len(times) - s.values.count(None) for s in done))
                return Vector(done)
        vec = to_vector(dense) if dense is not None else self.vector(node.expr, times)
        keys = [aggregations.grouping(s.labels, names, without) for s in vec.series]
        out: dict[Labels, Series] = {}
        for step in range(len(times)):
            if step % 64 == 0:
                self.check()
            samples, indexes = step_samples(vec.series, step)
            present = [keys[index] for index in indexes]
            if isinstance(param, str):
                present = aggregations.count_values_keys(samples, param, names, without)
                step_param: float | str | None = param
            else:
                step_param = param[step] if param is not None else None
            for labels, value in aggregations.aggregate(op, samples, present, step_param):
                held = out.get(labels)
                if held is None:
                    held = out[labels] = Series(labels, [None] * len(times))
                held.values[step] = value
        self.count(sum(len(times) - s.values.count(None) for s in out.values()))
        return Vector(list(out.values()))

    def dense(self, node: pp.Expr, times: list[int]) -> Dense | None:
        """The expression as arrays when it has an array form (a range function of a
        selector), else None (nothing evaluated)."""
        node = unwrap(node)
        if isinstance(node, pp.Call) and node.func.name in RANGE_FUNCTIONS:
            return range_dense(self, node.func.name, list(node.args), times)
        return None

    def binary(self, node: pp.BinaryExpr, times: list[int]) -> Value:
        op = str(node.op)
        modifier = node.modifier
        return_bool = modifier is not None and modifier.return_bool
        left = self.eval(node.lhs, times)
        right = self.eval(node.rhs, times)
        if isinstance(left, Scalar) and isinstance(right, Scalar):
            return Scalar([binary.scalar_scalar(op, a, b)
                           for a, b in zip(left.values, right.values, strict=True)])
        if isinstance(left, Vector) and isinstance(right, Scalar):
            return with_scalar(op, left, right.values, False, return_bool)
        if isinstance(left, Scalar) and isinstance(right, Vector):
            return with_scalar(op, right, left.values, True, return_bool)
        assert isinstance(left, Vector)
        assert isinstance(right, Vector)
        matching = vector_matching(modifier, op)
        lsigs = [matching.signature(s.labels) for s in left.series]
        rsigs = [matching.signature(s.labels) for s in right.series]
        out: dict[Labels, Series] = {}
        for step in range(len(times)):
            if step % 64 == 0:
                self.check()
            lhs, left_indexes = step_samples(left.series, step)
            rhs, right_indexes = step_samples(right.series, step)
            ls = [lsigs[index] for index in left_indexes]
            rs = [rsigs[index] for index in right_indexes]
            if op in binary.SET_OPERATORS:
                result = binary.set_operation(op, lhs, rhs, ls, rs)
            else:
                result = binary.vector_vector(op, lhs, rhs, ls, rs, matching, return_bool)
            for labels, value in result:
                held = out.get(labels)
                if held is None:
                    held = out[labels] = Series(labels, [None] * len(times))
                elif held.values[step] is not None:
                    raise same_labelset()
                held.values[step] = value
        self.count(sum(len(times) - s.values.count(None) for s in out.values()))
        return Vector(list(out.values()))

