"""Reading promql_parser's tree: durations in ms, parentheses, the type an expression
evaluates to (and the check a range query's expression passes), and the 2.42 functions the
parser does not know by itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import promql_parser as pp

from metrics_ingest.promql.values import BadData

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ms(delta: timedelta | None) -> int:
    return 0 if delta is None else delta // timedelta(milliseconds=1)


def at_ms(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(milliseconds=1)


def unwrap(node: pp.Expr) -> pp.Expr:
    while isinstance(node, pp.ParenExpr):
        node = node.expr
    return node


def value_type(node: pp.Expr) -> str:
    """scalar, vector, matrix or string: what the expression evaluates to."""
    node = unwrap(node)
    if isinstance(node, pp.NumberLiteral):
        return "scalar"
    if isinstance(node, pp.StringLiteral):
        return "string"
    if isinstance(node, pp.UnaryExpr):
        return value_type(node.expr)
    if isinstance(node, pp.MatrixSelector | pp.SubqueryExpr):
        return "matrix"
    if isinstance(node, pp.Call):
        return str(node.func.return_type).rsplit(".", 1)[-1].lower()
    if isinstance(node, pp.BinaryExpr):
        scalar = value_type(node.lhs) == value_type(node.rhs) == "scalar"
        return "scalar" if scalar else "vector"
    return "vector"


# holt_winters is a 2.42 function the parser (whose grammar is 2.45's) no longer knows.
# Registering is process-wide and idempotent: the parser's own table, not state of ours.
pp.register_extra_functions([pp.Function(
    "holt_winters", [pp.ValueType.Matrix, pp.ValueType.Scalar, pp.ValueType.Scalar],
    pp.ValueType.Vector)])


def parse(text: str) -> pp.Expr:
    """The expression's tree; a syntax or type error is BadData in the parser's words."""
    try:
        return pp.parse(text)
    except ValueError as exc:
        raise BadData(str(exc)) from None

def check_range_type(node: pp.Expr) -> None:
    kind = value_type(node)
    if kind not in ("scalar", "vector"):
        shown = "range vector" if kind == "matrix" else kind
        raise BadData(f'invalid expression type "{shown}" for range query, must be Scalar '
                      "or instant Vector")
