"""Series selectors (`up{source="alpha",job_id=~"12.*"}`), parsed by promql-parser and
matched as Prometheus 2.42 matches them: `=`, `!=`, `=~`, `!~`, regular expressions
anchored at both ends, and a label that is absent matching the empty string.

A stored series looks to a selector as it looks on /metrics: `__name__`, `source` and
every pushed label.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import orjson
import promql_parser

NAME = "__name__"


class SelectorError(ValueError):
    """Not a series selector; the message says what is wrong with it."""


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str  # "=", "!=", "=~", "!~"
    value: str
    test: Callable[[str], bool]


@dataclass(frozen=True)
class Selector:
    """The matchers of one selector, and the equalities a query can narrow rows by."""

    text: str
    matchers: tuple[Matcher, ...]

    def equal(self, label: str) -> str | None:
        """The value `label` must equal, when the selector says so."""
        for matcher in self.matchers:
            if matcher.label == label and matcher.op == "=":
                return matcher.value
        return None

    def matches(self, name: str, source: str, labels: str) -> bool:
        """Whether a stored series (its name, source and labels as stored: sorted-key JSON,
        "" for none) is selected."""
        pushed: dict[str, str] = orjson.loads(labels) if labels else {}
        for matcher in self.matchers:
            label = matcher.label
            value = (name if label == NAME else source if label == "source"
                     else pushed.get(label, ""))
            if not matcher.test(value):
                return False
        return True


OPS = {"Equal": "=", "NotEqual": "!=", "Re": "=~", "NotRe": "!~"}


def parse_selector(text: str) -> Selector:
    """Raises SelectorError unless `text` is one instant vector selector (no range, no
    offset, no function around it)."""
    try:
        expr = promql_parser.parse(text)
    except ValueError as exc:
        raise SelectorError(f"invalid selector {text!r}: {exc}") from None
    if not isinstance(expr, promql_parser.VectorSelector):
        raise SelectorError(f"{text!r} is not a series selector such as "
                            'up{source="alpha"}')
    if expr.offset is not None or expr.at is not None:
        raise SelectorError(f"{text!r}: a series selector takes no offset or @")
    matchers = [matcher_of(NAME, "=", expr.name)] if expr.name else []
    for raw in expr.matchers.matchers:
        op = OPS[str(raw.op).rpartition(".")[2]]
        matchers.append(matcher_of(raw.name, op, raw.value))
    if expr.matchers.or_matchers:
        raise SelectorError(f"{text!r}: `or` inside a selector is not supported")
    return Selector(text, tuple(matchers))


def matcher_of(label: str, op: str, value: str) -> Matcher:
    if op in ("=", "!="):
        equal = op == "="
        return Matcher(label, op, value, lambda seen: (seen == value) == equal)
    try:
        pattern = re.compile(value)
    except re.error as exc:
        raise SelectorError(f"invalid regular expression {value!r} for {label}: {exc}") from None
    wanted = op == "=~"
    return Matcher(label, op, value,
                   lambda seen: (pattern.fullmatch(seen) is not None) == wanted)
