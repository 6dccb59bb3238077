"""Binary operators over one step: IEEE arithmetic as Go computes it, comparisons (filtering
or `bool`), set operators, and vector matching with `on`/`ignoring`/`group_left`/
`group_right`, with Prometheus 2.42's errors for ambiguous matches."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from metrics_ingest.promql.values import (
    NAME,
    ExecutionError,
    Labels,
    drop_name,
    label_value,
    labels_text,
    with_label,
)

Sample = tuple[Labels, float]
ARITHMETIC = frozenset({"+", "-", "*", "/", "^", "%", "atan2"})
COMPARISON = frozenset({"==", "!=", ">", "<", ">=", "<="})
SET_OPERATORS = frozenset({"and", "or", "unless"})
DROPS_NAME = frozenset({"+", "-", "*", "/", "^", "%"})  # atan2 and comparisons keep it


def go_div(a: float, b: float) -> float:
    try:
        return a / b
    except ZeroDivisionError:
        if a == 0 or math.isnan(a):
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)


def go_mod(a: float, b: float) -> float:
    if b == 0 or math.isinf(a) or math.isnan(a) or math.isnan(b):
        return math.nan
    if math.isinf(b):
        return a
    return math.fmod(a, b)


def odd_integer(value: float) -> bool:
    return value.is_integer() and abs(value) < 2**53 and int(value) % 2 == 1


def go_pow(a: float, b: float) -> float:
    try:
        return math.pow(a, b)
    except OverflowError:
        return -math.inf if a < 0 and odd_integer(b) else math.inf
    except ValueError:  # 0 to a negative power, or a negative base to a fraction
        if a == 0:
            return math.copysign(math.inf, a) if odd_integer(b) else math.inf
        return math.nan


def arithmetic(op: str, a: float, b: float) -> float:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        return go_div(a, b)
    if op == "^":
        return go_pow(a, b)
    if op == "%":
        return go_mod(a, b)
    return math.atan2(a, b)


def compare(op: str, a: float, b: float) -> bool:
    if op == "==":
        return a == b
    if op == "!=":
        return a != b
    if op == ">":
        return a > b
    if op == "<":
        return a < b
    if op == ">=":
        return a >= b
    return a <= b


def scalar_scalar(op: str, a: float, b: float) -> float:
    if op in COMPARISON:
        return 1.0 if compare(op, a, b) else 0.0
    return arithmetic(op, a, b)


def element(op: str, a: float, b: float) -> tuple[float, bool]:
    """(value, keep) of one pair of samples: comparisons keep the left value when true."""
    if op in COMPARISON:
        return a, compare(op, a, b)
    return arithmetic(op, a, b), True


def vector_scalar(op: str, value: float, scalar: float, swap: bool, return_bool: bool
                  ) -> float | None:
    """One sample against a scalar; None where a comparison filters it out."""
    left, right = (scalar, value) if swap else (value, scalar)
    result, keep = element(op, left, right)
    if op in COMPARISON and swap:
        result = value  # the vector's sample is kept, whichever side it is on
    if return_bool:
        return 1.0 if keep else 0.0
    return result if keep else None


@dataclass(frozen=True, slots=True)
class Matching:
    card: str  # one-to-one, many-to-one, one-to-many, many-to-many
    on: bool
    labels: frozenset[str]
    include: tuple[str, ...] = ()

    def signature(self, labels: Labels) -> Labels:
        if self.on:
            return tuple(pair for pair in labels if pair[0] in self.labels)
        return tuple(pair for pair in labels if pair[0] not in self.labels and pair[0] != NAME)


def result_labels(left: Labels, right: Labels, op: str, matching: Matching) -> Labels:
    labels = drop_name(left) if op in DROPS_NAME else left
    if matching.card == "one-to-one":
        if matching.on:
            labels = tuple(pair for pair in labels if pair[0] in matching.labels)
        else:
            labels = tuple(pair for pair in labels if pair[0] not in matching.labels)
    for name in matching.include:  # group_x labels come from the "one" side
        labels = with_label(labels, name, label_value(right, name))
    return labels


def vector_vector(op: str, lhs: Sequence[Sample], rhs: Sequence[Sample],
                  lsigs: Sequence[Labels], rsigs: Sequence[Labels], matching: Matching,
                  return_bool: bool) -> list[Sample]:
    """Arithmetic and comparisons between two vectors (VectorBinop)."""
    if not lhs or not rhs:
        return []
    swapped = matching.card == "one-to-many"
    if swapped:
        lhs, rhs, lsigs, rsigs = rhs, lhs, rsigs, lsigs
    one_side: dict[Labels, Sample] = {}
    for sample, sig in zip(rhs, rsigs, strict=True):
        duplicate = one_side.get(sig)
        if duplicate is not None:
            side = "left" if swapped else "right"
            shown = (tuple(p for p in sample[0] if p[0] in matching.labels) if matching.on
                     else tuple(p for p in sample[0]
                                if p[0] not in matching.labels and p[0] != NAME))
            raise ExecutionError(
                f"found duplicate series for the match group {labels_text(shown)} on the "
                f"{side} hand-side of the operation: [{labels_text(sample[0])}, "
                f"{labels_text(duplicate[0])}];many-to-many matching not allowed: matching "
                "labels must be unique on one side")
        one_side[sig] = sample
    matched: dict[Labels, set[Labels] | None] = {}
    out: list[Sample] = []
    for sample, sig in zip(lhs, lsigs, strict=True):
        other = one_side.get(sig)
        if other is None:
            continue
        left, right = (other[1], sample[1]) if swapped else (sample[1], other[1])
        value, keep = element(op, left, right)
        if return_bool:
            value = 1.0 if keep else 0.0
        elif not keep:
            continue
        labels = result_labels(sample[0], other[0], op, matching)
        if return_bool:
            labels = drop_name(labels)
        if matching.card == "one-to-one":
            if sig in matched:
                raise ExecutionError("multiple matches for labels: many-to-one matching must "
                                     "be explicit (group_left/group_right)")
            matched[sig] = None
        else:
            inserted = matched.get(sig)
            if inserted is None:
                inserted = matched[sig] = set()
            elif labels in inserted:
                raise ExecutionError(
                    "multiple matches for labels: grouping labels must ensure unique matches")
            inserted.add(labels)
        out.append((labels, value))
    return out


def set_operation(op: str, lhs: Sequence[Sample], rhs: Sequence[Sample],
                  lsigs: Sequence[Labels], rsigs: Sequence[Labels]) -> list[Sample]:
    if op == "and":
        if not lhs or not rhs:
            return []
        right = set(rsigs)
        return [s for s, sig in zip(lhs, lsigs, strict=True) if sig in right]
    if op == "unless":
        if not lhs or not rhs:
            return list(lhs)
        right = set(rsigs)
        return [s for s, sig in zip(lhs, lsigs, strict=True) if sig not in right]
    if not lhs or not rhs:
        return [*lhs, *rhs]
    left = set(lsigs)
    return [*lhs, *(s for s, sig in zip(rhs, rsigs, strict=True) if sig not in left)]
