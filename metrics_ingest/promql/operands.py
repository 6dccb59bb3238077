"""Operators over whole values, for the evaluator: unary minus, a vector against a scalar
at every step, and the matching (cardinality, on/ignoring, group labels) a binary
expression's modifier asks for. binary.py holds the per-sample rules they apply."""

from __future__ import annotations

import promql_parser as pp

from metrics_ingest.promql import binary
from metrics_ingest.promql.values import Scalar, Series, Value, Vector, drop_name, merge


def negate(value: Value) -> Value:
    if isinstance(value, Scalar):
        return Scalar([-v for v in value.values])
    assert isinstance(value, Vector)
    return Vector(merge([Series(drop_name(s.labels), [None if v is None else -v
                                                       for v in s.values])
                         for s in value.series]))


def with_scalar(op: str, vec: Vector, scalars: list[float], swap: bool, return_bool: bool
                ) -> Vector:
    drop = op in binary.DROPS_NAME or return_bool
    out = []
    for s in vec.series:
        values = [None if v is None else binary.vector_scalar(op, v, scalars[i], swap,
                                                              return_bool)
                  for i, v in enumerate(s.values)]
        if any(v is not None for v in values):
            out.append(Series(drop_name(s.labels) if drop else s.labels, values))
    return Vector(merge(out))


def vector_matching(modifier: pp.BinModifier | None, op: str) -> binary.Matching:
    if modifier is None:
        card = "many-to-many" if op in binary.SET_OPERATORS else "one-to-one"
        return binary.Matching(card, False, frozenset())
    card = {"OneToOne": "one-to-one", "ManyToOne": "many-to-one", "OneToMany": "one-to-many",
            "ManyToMany": "many-to-many"}[str(modifier.card).rsplit(".", 1)[-1]]
    matching = modifier.matching
    on = matching is not None and str(matching.type).endswith("Include")
    labels = frozenset(matching.labels) if matching is not None else frozenset()
    return binary.Matching(card, on, labels, tuple(modifier.group_labels or ()))
