"""The values a PromQL expression evaluates to, over the steps of an evaluation, and the
errors a query ends with (each with the `errorType` Prometheus answers)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

# A label set: (name, value) pairs sorted by name. Tuples compare as Prometheus's
# labels.Compare orders series (name, then value, pair by pair; a prefix first).
Labels = tuple[tuple[str, str], ...]
NAME = "__name__"
ErrorType = Literal["bad_data", "execution", "timeout", "canceled", "internal"]


class QueryError(Exception):
    """A query that cannot be answered: `error_type` is Prometheus's word for why."""

    error_type: ErrorType = "execution"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self) -> tuple[object, tuple[type[QueryError], str]]:
        """Pickled as (class, message), whatever the subclass' own arguments: queries run
        in worker processes (query_pool.py)."""
        return rebuild, (type(self), self.message)


def rebuild(kind: type[QueryError], message: str) -> QueryError:
    error = kind.__new__(kind)
    QueryError.__init__(error, message)
    return error


class BadData(QueryError):
    """The request or the expression is wrong (400), or asks for what is not supported."""

    error_type = "bad_data"


class Unsupported(BadData):
    def __init__(self, part: str) -> None:
        super().__init__(f"not supported by metrics-ingest's PromQL engine yet: {part}")


class ExecutionError(QueryError):
    """Evaluation failed (422): duplicate series, bad matching, too many samples."""

    error_type = "execution"


class QueryTimeout(QueryError):
    error_type = "timeout"

    def __init__(self, where: str = "expression evaluation") -> None:
        super().__init__(f"query timed out in {where}")


class QueryCanceled(QueryError):
    error_type = "canceled"

    def __init__(self) -> None:
        super().__init__("query was canceled in expression evaluation")


def too_many_samples() -> ExecutionError:
    return ExecutionError(
        "query processing would load too many samples into memory in query execution")


def same_labelset() -> ExecutionError:
    return ExecutionError("vector cannot contain metrics with the same labelset")


@dataclass(slots=True)
class Series:
    """One series of an instant vector over the steps: `values[i]` at step i, None where
    the series has no sample. `times` holds a sample's own timestamp (ms) per step for
    `timestamp()` of a selector; None means the step's evaluation time."""

    labels: Labels
    values: list[float | None]
    times: list[int | None] | None = None


@dataclass(slots=True)
class Vector:
    series: list[Series]


@dataclass(slots=True)
class Scalar:
    values: list[float]


@dataclass(slots=True)
class String:
    value: str


@dataclass(slots=True)
class RangeSeries:
    """A series' points in time order (ms), for a range vector; `stale`: the times (ms) of
    its staleness markers, which end it at a step (no point is a marker)."""

    labels: Labels
    times: list[int]
    values: list[float]
    stale: Sequence[int] = ()


@dataclass(slots=True)
class Matrix:
    series: list[RangeSeries]


Value = Vector | Scalar | String | Matrix


def drop_name(labels: Labels) -> Labels:
    if labels and labels[0][0] == NAME:
        return labels[1:]
    return tuple(pair for pair in labels if pair[0] != NAME)


def label_value(labels: Labels, name: str) -> str:
    for key, value in labels:
        if key == name:
            return value
    return ""


def with_label(labels: Labels, name: str, value: str) -> Labels:
    """`labels` with `name` set to `value` (removed when the value is empty)."""
    kept = [pair for pair in labels if pair[0] != name]
    if value:
        kept.append((name, value))
        kept.sort()
    return tuple(kept)


def labels_text(labels: Labels) -> str:
    """`{a="b", c="d"}` as Prometheus's labels.String() writes it in error messages."""
    return "{" + ", ".join(f'{key}="{value}"' for key, value in labels) + "}"


def merge(series: list[Series]) -> list[Series]:
    """Series with equal labels made one (each step taken from whichever has it): two with
    a sample at the same step is Prometheus's "same labelset" error."""
    by_labels: dict[Labels, Series] = {}
    for item in series:
        held = by_labels.get(item.labels)
        if held is None:
            by_labels[item.labels] = item
            continue
        for step, value in enumerate(item.values):
            if value is not None:
                if held.values[step] is not None:
                    raise same_labelset()
                held.values[step] = value
    return list(by_labels.values())


def format_value(value: float) -> str:
    """A sample value as Prometheus writes it in JSON: Go's shortest round-trip digits,
    positional unless |v| < 1e-6 or >= 1e21."""
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value)) if value or math.copysign(1, value) > 0 else "-0"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    magnitude = abs(value)
    text = repr(value)
    if magnitude < 1e-6 or magnitude >= 1e21:
        return text if "e" in text else f"{value:e}"  # repr is exponent-form in this range
    return positional(text)


def positional(text: str) -> str:
    """Python's shortest repr of a float without its exponent (Go's 'f' with precision -1)."""
    if "e" in text or "E" in text:
        text = format(Decimal(text), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def format_label_value(value: float) -> str:
    """A value as count_values writes it into a label: Go's FormatFloat(v, 'f', -1)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return "-0" if value == 0 and math.copysign(1, value) < 0 else positional(repr(value))


def json_time(ms: int) -> int | float:
    """A timestamp as the API writes it: seconds, with the milliseconds when there are some."""
    return ms // 1000 if ms % 1000 == 0 else ms / 1000


def step_samples(series: list[Series], step: int) -> tuple[list[tuple[Labels, float]], list[int]]:
    """One step of a vector: its (labels, value) samples, and which series each came from."""
    samples: list[tuple[Labels, float]] = []
    indexes: list[int] = []
    for index, item in enumerate(series):
        value = item.values[step]
        if value is not None:
            samples.append((item.labels, value))
            indexes.append(index)
    return samples, indexes
