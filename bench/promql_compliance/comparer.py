"""Comparing two range-query answers as the suite's comparer does (promql/comparer): the
answer as client_golang decodes it (a model.Matrix), the tested one sorted by
model.Metric.Before, the reference left in its own order, then go-cmp's Diff with floats equal
within a fraction of 1e-5 (no absolute margin; infinities exactly; NaN equal to NaN) and label
sets and timestamps exactly. A case that should fail passes when the tested system fails too.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

from bench.promql_compliance.cases import Case

FRACTION = 0.00001  # comparer.go defaultFraction
MARGIN = 0.0  # comparer.go defaultMargin

Metric = dict[str, str]
Stream = tuple[Metric, list[tuple[int, float]]]  # a series: labels, (ms, value) points


@dataclass(frozen=True)
class Answer:
    """What client_golang's QueryRange returned: a matrix, or an error."""

    matrix: list[Stream] | None
    error: str | None = None


@dataclass(frozen=True)
class Result:
    case: Case
    diff: str = ""
    unexpected_failure: str = ""
    unexpected_success: bool = False
    unsupported: bool = False
    reference_series: int = 0  # how many series the reference answered (0: an empty result)

    @property
    def success(self) -> bool:
        return not self.diff and not self.unexpected_success and not self.unexpected_failure


def decode(status: int, body: dict[str, Any]) -> Answer:
    """An HTTP answer as client_golang reads it: a non-2xx or `"status": "error"` is an
    error (with the errorType and message), else the matrix."""
    if status // 100 != 2 or body.get("status") != "success":
        return Answer(None, f"{status} {body.get('errorType')}: {body.get('error')}")
    data = body["data"]
    if data.get("resultType") != "matrix":
        return Answer(None, f"resultType {data.get('resultType')} for a range query")
    return Answer([(dict(item["metric"]), [(millis(t), float(v)) for t, v in item["values"]])
                   for item in data["result"]])


def millis(stamp: float | int) -> int:
    """model.Time from the JSON number: seconds with up to three decimals."""
    return round(float(stamp) * 1000)


def before(a: Metric, b: Metric) -> bool:
    """model.LabelSet.Before: fewer labels first, then the first differing pair over the
    sorted union of names (a name missing from one side puts that side first)."""
    if len(a) != len(b):
        return len(a) < len(b)
    for name in sorted([*a, *b]):
        if name not in a:
            return True
        if name not in b:
            return False
        if a[name] != b[name]:
            return a[name] < b[name]
    return False


def order(x: Stream, y: Stream) -> int:
    """sort.Sort(model.Matrix): by Before (label sets are unique, so no ties)."""
    return -1 if before(x[0], y[0]) else 1 if before(y[0], x[0]) else 0


def same_value(x: float, y: float) -> bool:
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)  # cmpopts.EquateNaNs
    if math.isinf(x) or math.isinf(y):
        return x == y  # EquateApprox leaves infinities to ==
    return abs(x - y) <= max(MARGIN, FRACTION * min(abs(x), abs(y)))


def diff(reference: list[Stream], tested: list[Stream]) -> str:
    """'' when equal; else where the first difference is."""
    if len(reference) != len(tested):
        return (f"{len(tested)} series, reference {len(reference)}: tested "
                f"{[m for m, _ in tested][:4]}, reference {[m for m, _ in reference][:4]}")
    for (want_metric, want), (have_metric, have) in zip(reference, tested, strict=True):
        if want_metric != have_metric:
            return f"series {have_metric}, reference {want_metric}"
        if [t for t, _ in want] != [t for t, _ in have]:
            missing = sorted({t for t, _ in want} - {t for t, _ in have})[:3]
            extra = sorted({t for t, _ in have} - {t for t, _ in want})[:3]
            return (f"{want_metric}: {len(have)} points, reference {len(want)} (missing at "
                    f"{missing}, extra at {extra})")
        for (t, a), (_, b) in zip(want, have, strict=True):
            if not same_value(a, b):
                return f"{want_metric} at {t}: {b!r}, reference {a!r}"
    return ""


def compare(case: Case, reference: Answer, tested: Answer) -> Result:
    """comparer.Compare. A reference that fails where the case should not (or succeeds
    where it should fail) is the set-up's fault: ValueError, as the tester aborts."""
    if (reference.error is not None) != case.should_fail:
        raise ValueError(f"reference answered {case.query!r} with "
                         f"{reference.error or 'success'} (should_fail={case.should_fail})")
    if (tested.error is not None) != case.should_fail:
        if tested.error is not None:
            return Result(case, unexpected_failure=tested.error,
                          unsupported="501" in tested.error)
        return Result(case, unexpected_success=True)
    if case.should_fail or case.skip_comparison:
        return Result(case)
    assert reference.matrix is not None
    assert tested.matrix is not None
    found = len(reference.matrix)
    ordered = sorted(tested.matrix, key=functools.cmp_to_key(order))
    return Result(case, diff=diff(reference.matrix, ordered), reference_series=found)


def cause(result: Result) -> str:
    """A failure's kind, for grouping the report."""
    if result.unexpected_success:
        return "succeeded where Prometheus fails"
    if result.unexpected_failure:
        return "failed: " + result.unexpected_failure.split(":", 1)[0]
    if " series, reference " in result.diff or result.diff.startswith("series "):
        return "different series"
    if " points, reference " in result.diff:
        return "different timestamps"
    return "different values"
