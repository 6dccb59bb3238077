"""The suite's test cases, expanded as its tester expands them (promql/testcases/expand.go):
each template's `{{.name}}` placeholders take every value of the variant arguments it lists,
the first listed varying slowest; every case is a range query over the same window."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

QUERIES = Path(__file__).resolve().parent / "promql-test-queries.yml"

# The tester's variant arguments (testVariantArgs in expand.go), in its order.
VARIANT_ARGS: dict[str, tuple[str, ...]] = {
    "range": ("1s", "15s", "1m", "5m", "15m", "1h"),
    "offset": ("1m", "5m", "10m"),
    "simpleAggrOp": ("sum", "avg", "max", "min", "count", "stddev", "stdvar"),
    "simpleTimeAggrOp": ("sum", "avg", "max", "min", "count", "stddev", "stdvar", "absent",
                         "last"),
    "topBottomOp": ("topk", "bottomk"),
    "quantile": ("-0.5", "0.1", "0.5", "0.75", "0.95", "0.90", "0.99", "1", "1.5"),
    "arithBinOp": ("+", "-", "*", "/", "%", "^"),
    "compBinOp": ("==", "!=", "<", ">", "<=", ">="),
    "binOp": ("+", "-", "*", "/", "%", "^", "==", "!=", "<", ">", "<=", ">="),
    "simpleMathFunc": ("abs", "ceil", "floor", "exp", "sqrt", "ln", "log2", "log10", "round"),
    "extrapolatedRateFunc": ("delta", "rate", "increase"),
    "clampFunc": ("clamp_min", "clamp_max"),
    "instantRateFunc": ("idelta", "irate"),
    "dateFunc": ("day_of_month", "day_of_week", "days_in_month", "hour", "minute", "month",
                 "year"),
    "smoothingFactor": ("0.1", "0.5", "0.8"),
    "trendFactor": ("0.1", "0.5", "0.8"),
}
PLACEHOLDER = re.compile(r"\{\{\s*\.(\w+)\s*\}\}")


@dataclass(frozen=True)
class Case:
    query: str
    template: str  # the test case it was expanded from
    should_fail: bool = False
    skip_comparison: bool = False


def fill(template: str, args: dict[str, str]) -> str:
    """Go's text/template for the only action the suite uses, `{{.name}}`."""
    def value(match: re.Match[str]) -> str:
        try:
            return args[match.group(1)]
        except KeyError:
            raise ValueError(f"{template!r}: no value for {match.group(1)}") from None

    return PLACEHOLDER.sub(value, template)


def variants(template: str, names: list[str], args: dict[str, str]) -> list[str]:
    if not names:
        return [fill(template, args)]
    first, rest = names[0], [name for name in names if name != names[0]]
    out: list[str] = []
    for value in VARIANT_ARGS[first]:
        out += variants(template, rest, {**args, first: value})
    return out


def load_cases(path: Path = QUERIES) -> list[Case]:
    """Every expanded test case of the suite file, in the tester's order."""
    config = yaml.safe_load(path.read_text())
    cases = []
    for entry in config["test_cases"]:
        template = entry["query"]
        for query in variants(template, list(entry.get("variant_args") or []), {}):
            cases.append(Case(query, template, bool(entry.get("should_fail")),
                              bool(entry.get("skip_comparison"))))
    return cases
