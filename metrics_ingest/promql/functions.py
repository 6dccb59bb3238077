"""Functions of instant vectors and scalars, applied step by step: math, clamping, dates,
label rewriting, `histogram_quantile` over classic buckets (functions.go, quantile.go)."""

from __future__ import annotations

import calendar
import math
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from metrics_ingest.promql.binary import go_div
from metrics_ingest.promql.values import (
    NAME,
    ExecutionError,
    Labels,
    drop_name,
    label_value,
    with_label,
)

LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# One step of an instant vector: (labels, value) samples.
Samples = list[tuple[Labels, float]]


def go_round(value: float, to_nearest: float) -> float:
    """round(v, to_nearest) as Prometheus computes it: through the inverse, ties up, with
    IEEE infinities and NaN (round(v, 0) is NaN)."""
    inverse = 1.0 / to_nearest if to_nearest else math.copysign(math.inf, to_nearest)
    scaled = value * inverse + 0.5
    floored = float(math.floor(scaled)) if math.isfinite(scaled) else scaled
    return go_div(floored, inverse)


def safe(function: Callable[[float], float]) -> Callable[[float], float]:
    """A math function with Go's answers where Python raises (NaN outside the domain,
    infinities on overflow and at the poles)."""

    def apply(value: float) -> float:
        try:
            return function(value)
        except OverflowError:
            return math.copysign(math.inf, value) if function is math.sinh else math.inf
        except ValueError:
            if math.isnan(value):
                return math.nan
            if function in (math.log, math.log2, math.log10) and value == 0:
                return -math.inf
            if function is math.atanh and abs(value) == 1:
                return math.copysign(math.inf, value)
            return math.nan

    return apply


def sign(value: float) -> float:
    return -1.0 if value < 0 else 1.0 if value > 0 else value


def whole(function: Callable[[float], int]) -> Callable[[float], float]:
    """math.ceil and math.floor as Go's: floats, infinities and NaN kept."""
    return lambda value: float(function(value)) if math.isfinite(value) else value


SIMPLE: dict[str, Callable[[float], float]] = {
    "abs": abs, "ceil": whole(math.ceil), "floor": whole(math.floor), "exp": safe(math.exp),
    "sqrt": safe(math.sqrt), "ln": safe(math.log), "log2": safe(math.log2),
    "log10": safe(math.log10), "sin": safe(math.sin), "cos": safe(math.cos),
    "tan": safe(math.tan), "asin": safe(math.asin), "acos": safe(math.acos),
    "atan": safe(math.atan), "sinh": safe(math.sinh), "cosh": safe(math.cosh),
    "tanh": safe(math.tanh), "asinh": safe(math.asinh), "acosh": safe(math.acosh),
    "atanh": safe(math.atanh), "sgn": sign,
    "rad": lambda v: v * math.pi / 180, "deg": lambda v: v * 180 / math.pi,
}


def date_part(name: str, seconds: float) -> float:
    try:
        moment = datetime.fromtimestamp(math.trunc(seconds), UTC)
    except (ValueError, OverflowError, OSError):  # NaN, infinite or beyond year 9999
        return math.nan
    if name == "days_in_month":
        return float(calendar.monthrange(moment.year, moment.month)[1])
    if name == "day_of_month":
        return float(moment.day)
    if name == "day_of_week":
        return float(moment.isoweekday() % 7)
    if name == "day_of_year":
        return float(moment.timetuple().tm_yday)
    if name == "hour":
        return float(moment.hour)
    if name == "minute":
        return float(moment.minute)
    if name == "month":
        return float(moment.month)
    return float(moment.year)


DATE_FUNCTIONS = frozenset({"days_in_month", "day_of_month", "day_of_week", "day_of_year",
                            "hour", "minute", "month", "year"})


def expand(template: str, match: re.Match[str]) -> str:
    """Go's regexp Expand: `$1`, `${1}`, `$name`, `${name}`, `$$`; unknown groups are ""."""
    out = []
    i = 0
    while i < len(template):
        char = template[i]
        if char != "$" or i + 1 >= len(template):
            out.append(char)
            i += 1
            continue
        nxt = template[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
            continue
        if nxt == "{":
            close = template.find("}", i + 2)
            name = template[i + 2:close] if close > 0 else ""
            if close < 0 or not re.fullmatch(r"[A-Za-z0-9_]+", name):
                out.append(char)
                i += 1
                continue
            i = close + 1
        else:
            found = re.match(r"[A-Za-z0-9_]+", template[i + 1:])
            if found is None:
                out.append(char)
                i += 1
                continue
            name = found.group(0)
            i += 1 + len(name)
        out.append(group_text(match, name))
    return "".join(out)


def group_text(match: re.Match[str], name: str) -> str:
    try:
        text = match.group(int(name) if name.isdigit() else name)
    except IndexError:  # no such group
        return ""
    return text or ""


def label_replace(samples: Samples, dst: str, replacement: str, src: str,
                  pattern: re.Pattern[str]) -> Samples:
    out = []
    for labels, value in samples:
        match = pattern.fullmatch(label_value(labels, src))
        if match is not None:
            labels = with_label(labels, dst, expand(replacement, match))
        out.append((labels, value))
    return out


def compile_replace(dst: str, regex: str) -> re.Pattern[str]:
    try:
        pattern = re.compile(f"(?:{regex})")
    except re.error:
        raise ExecutionError(f"invalid regular expression in label_replace(): {regex}") from None
    if not LABEL_NAME_RE.fullmatch(dst):
        raise ExecutionError(f"invalid destination label name in label_replace(): {dst}")
    return pattern


def check_join(dst: str, sources: Sequence[str]) -> None:
    for source in sources:
        if not LABEL_NAME_RE.fullmatch(source):
            raise ExecutionError(f"invalid source label name in label_join(): {source}")
    if not LABEL_NAME_RE.fullmatch(dst):
        raise ExecutionError(f"invalid destination label name in label_join(): {dst}")


def label_join(samples: Samples, dst: str, separator: str, sources: Sequence[str]) -> Samples:
    return [(with_label(labels, dst, separator.join(label_value(labels, s) for s in sources)),
             value) for labels, value in samples]


def parse_bound(text: str) -> float | None:
    """An `le` label as Go's ParseFloat reads it (None when it cannot)."""
    if not text or text != text.strip() or "_" in text:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    buckets.sort(key=lambda bucket: bucket[0])
    if not math.isinf(buckets[-1][0]) or buckets[-1][0] < 0:
        return math.nan
    merged: list[list[float]] = []
    for bound, count in buckets:  # buckets with equal bounds are one
        if merged and merged[-1][0] == bound:
            merged[-1][1] += count
        else:
            merged.append([bound, count])
    highest = merged[0][1]
    for bucket in merged[1:]:  # the envelope: counts never decrease
        if bucket[1] > highest:
            highest = bucket[1]
        elif bucket[1] < highest:
            bucket[1] = highest
    if len(merged) < 2:
        return math.nan
    observations = merged[-1][1]
    if observations == 0:
        return math.nan
    rank = q * observations
    b = next((i for i in range(len(merged) - 1) if merged[i][1] >= rank), len(merged) - 1)
    if b == len(merged) - 1:
        return merged[-2][0]
    if b == 0 and merged[0][0] <= 0:
        return merged[0][0]
    start = 0.0
    end, count = merged[b]
    if b > 0:
        start = merged[b - 1][0]
        count -= merged[b - 1][1]
        rank -= merged[b - 1][1]
    return start + (end - start) * (rank / count)


def histogram_quantile(q: float, samples: Samples) -> Samples:
    groups: dict[Labels, tuple[Labels, list[tuple[float, float]]]] = {}
    for labels, value in samples:
        bound = parse_bound(label_value(labels, "le"))
        if bound is None:
            continue
        signature = tuple(pair for pair in labels if pair[0] != "le")
        held = groups.get(signature)
        if held is None:
            held = groups[signature] = (drop_name(signature), [])
        held[1].append((bound, value))
    return [(labels, bucket_quantile(q, buckets)) for labels, buckets in groups.values()]


def sort_samples(samples: Samples, descending: bool) -> Samples:
    """sort() and sort_desc(): NaN last either way."""
    if descending:
        numbers = sorted((s for s in samples if not math.isnan(s[1])), key=lambda s: -s[1])
    else:
        numbers = sorted((s for s in samples if not math.isnan(s[1])), key=lambda s: s[1])
    return numbers + [s for s in samples if math.isnan(s[1])]


def absent_labels(matchers: Sequence[tuple[str, str, str]]) -> Labels:
    """The labels absent() gives its 1: the equality matchers' (a label matched twice is
    left out), never the name."""
    labels: dict[str, str] = {}
    seen: set[str] = set()
    for name, op, value in matchers:
        if name == NAME:
            continue
        if op == "=" and name not in seen:
            labels[name] = value
            seen.add(name)
        else:
            labels.pop(name, None)
    return tuple(sorted(labels.items()))

