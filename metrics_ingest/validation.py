"""Pure validation of a decoded JSON push: the Worker's payload shape in, samples or errors out."""

from __future__ import annotations

import math
import re
from typing import Any, NamedTuple

import orjson

MAX_ERRORS = 100
MAX_LABELS = 32
MAX_LABEL_VALUE = 1024
MAX_METRIC_NAME = 200
PAST_LIMIT_SECONDS = 365 * 86400
FUTURE_LIMIT_SECONDS = 3600
RESERVED_PREFIX = "metrics_ingest_"

SOURCE_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
METRIC_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
# Every name of a metrics object at once, newline-joined: one C-level match on the hot path.
METRIC_NAMES_RE = re.compile(rf"(?:[a-zA-Z_:][a-zA-Z0-9_:]{{0,{MAX_METRIC_NAME - 1}}}\n)+")
NUMBER_TYPES = frozenset({int, float})
LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
DIGITS_RE = re.compile(r"[0-9]{1,12}")


class SampleGroup(NamedTuple):
    """Samples sharing source, labels and timestamp: one pushed object's metrics.

    `names[i]` has `values[i]`. A sample's identity is (source, labels, name, timestamp).
    """

    source: str
    labels: str  # canonical JSON object with sorted keys, "" when the series has no labels
    timestamp: int
    names: list[str]
    values: list[float]


GroupKey = tuple[str, str, int]  # (source, labels, timestamp)


def group_for(groups: dict[GroupKey, SampleGroup], source: str, labels: str,
              timestamp: int) -> SampleGroup:
    """The group of (source, labels, timestamp), made on first use: a format's samples that
    share them travel as one group (fewer, larger groups for the writer)."""
    key = (source, labels, timestamp)
    group = groups.get(key)
    if group is None:
        group = groups[key] = SampleGroup(source, labels, timestamp, [], [])
    return group


class FieldError(NamedTuple):
    path: str
    error: str


class PushInvalid(ValueError):
    """The push breaks the contract; `errors` lists every problem found (at most MAX_ERRORS)."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors[:MAX_ERRORS]
        first = self.errors[0]
        where = f"{first.path}: " if first.path else ""
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"{where}{first.error}{more}")


def shorten(text: str, limit: int = 64) -> str:
    """Keep error messages small whatever the client sent (a 10 MB name must not echo back)."""
    return text if len(text) <= limit else text[:limit] + "..."


def canonical_labels(labels: dict[str, str]) -> str:
    """Stored form of a label set: sorted-key JSON ("" for none), so equal sets compare equal."""
    if not labels:
        return ""
    return orjson.dumps(labels, option=orjson.OPT_SORT_KEYS).decode()


def check_source(value: Any, path: str, errors: list[FieldError]) -> str | None:
    if not isinstance(value, str):
        errors.append(FieldError(path, "is required and must be a string"))
        return None
    if not SOURCE_RE.fullmatch(value):
        errors.append(FieldError(path, "must be 1-64 characters of A-Z a-z 0-9 _ . -"))
        return None
    return value


def check_timestamp(value: Any, now: float, path: str, errors: list[FieldError]) -> int | None:
    """Unix seconds from an integer, a float (floored) or a string of digits, within bounds."""
    if value is None:
        return int(now)
    if isinstance(value, bool):
        seconds = None
    elif isinstance(value, int):
        seconds = value
    elif isinstance(value, float):
        seconds = math.floor(value) if math.isfinite(value) else None
    elif isinstance(value, str) and DIGITS_RE.fullmatch(value):
        seconds = int(value)
    else:
        seconds = None
    if seconds is None:
        errors.append(FieldError(
            path, "must be Unix seconds: an integer, a number or a string of digits"))
        return None
    if seconds < now - PAST_LIMIT_SECONDS:
        errors.append(FieldError(path, "is more than 365 days in the past"))
        return None
    if seconds > now + FUTURE_LIMIT_SECONDS:
        errors.append(FieldError(path, "is more than 1 hour in the future"))
        return None
    return seconds


def check_metric_name(name: str, path: str, errors: list[FieldError]) -> bool:
    if len(name) > MAX_METRIC_NAME:
        errors.append(FieldError(path, f"metric name is longer than {MAX_METRIC_NAME} characters"))
        return False
    if not METRIC_NAME_RE.fullmatch(name):
        errors.append(FieldError(path, "metric name must match [a-zA-Z_:][a-zA-Z0-9_:]*"))
        return False
    if name.startswith(RESERVED_PREFIX):
        errors.append(FieldError(path, f"metric names starting {RESERVED_PREFIX} are reserved"))
        return False
    return True


def check_value(value: Any, path: str, errors: list[FieldError]) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        errors.append(FieldError(path, "must be a number"))
        return None
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        errors.append(FieldError(path, "must be a finite number"))
        return None
    return number


def check_label(name: Any, value: Any, path: str, errors: list[FieldError]) -> bool:
    if len(name) > MAX_METRIC_NAME or not LABEL_NAME_RE.fullmatch(name):
        errors.append(FieldError(path, "label name must match [a-zA-Z_][a-zA-Z0-9_]*"))
        return False
    if name.startswith("__"):
        errors.append(FieldError(path, "label names starting __ are reserved"))
        return False
    if name == "source":
        errors.append(FieldError(path, "label name source is reserved (use the source field)"))
        return False
    if not isinstance(value, str) or not value:
        errors.append(FieldError(path, "label value must be a non-empty string"))
        return False
    if len(value) > MAX_LABEL_VALUE:
        errors.append(FieldError(path, f"label value is longer than {MAX_LABEL_VALUE} characters"))
        return False
    return True


def check_labels(value: Any, path: str, errors: list[FieldError]) -> str | None:
    """Validate a label object; return its canonical form, or None after recording errors."""
    if value is None:
        return ""
    if not isinstance(value, dict):
        errors.append(FieldError(path, "must be an object of label name to string value"))
        return None
    if len(value) > MAX_LABELS:
        errors.append(FieldError(path, f"has more than {MAX_LABELS} labels"))
        return None
    before = len(errors)
    for name, label_value in value.items():
        check_label(name, label_value, f"{path}.{shorten(name)}", errors)
    if len(errors) > before:
        return None
    return canonical_labels(value)


def fast_metrics(metrics: dict[str, Any]) -> tuple[list[str], list[float]] | None:
    """Names and values when every metric is valid, checked with C-level passes; else None,
    and the slow path finds and words each problem."""
    names = list(metrics)
    joined = "\n" + "\n".join(names) + "\n"
    if (not METRIC_NAMES_RE.fullmatch(joined, 1) or "\n" + RESERVED_PREFIX in joined
            or joined.count("\n") != len(names) + 1):  # a newline inside a name
        return None
    raw = list(metrics.values())
    if not {*map(type, raw)} <= NUMBER_TYPES:  # exact types: bool and str are not numbers
        return None
    try:
        values = list(map(float, raw))
    except OverflowError:  # an integer beyond float range (not from JSON, from Python callers)
        return None
    if not all(map(math.isfinite, values)):
        return None
    return names, values


def checked_metrics(
    metrics: dict[str, Any], prefix: str, errors: list[FieldError]
) -> tuple[list[str], list[float]]:
    """The slow path: every metric checked on its own, each problem recorded."""
    names: list[str] = []
    values: list[float] = []
    for name, raw in metrics.items():
        path = f"{prefix}metrics.{shorten(name)}"
        if check_metric_name(name, path, errors):
            value = check_value(raw, path, errors)
            if value is not None:
                names.append(name)
                values.append(value)
        if len(errors) > MAX_ERRORS:
            break
    return names, values


def parse_object(
    payload: Any, now: float, prefix: str, errors: list[FieldError], groups: list[SampleGroup]
) -> None:
    """Validate one push object, appending its samples (when valid) or its errors."""
    if not isinstance(payload, dict):
        errors.append(FieldError(prefix.rstrip("."), "must be a JSON object"))
        return
    before = len(errors)
    source = check_source(payload.get("source"), f"{prefix}source", errors)
    timestamp = check_timestamp(payload.get("timestamp"), now, f"{prefix}timestamp", errors)
    labels = check_labels(payload.get("labels"), f"{prefix}labels", errors)
    metrics = payload.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        errors.append(FieldError(f"{prefix}metrics", "is required and must be a non-empty object"))
        return
    checked = fast_metrics(metrics) or checked_metrics(metrics, prefix, errors)
    if len(errors) > before or source is None or timestamp is None or labels is None:
        return
    groups.append(SampleGroup(source, labels, timestamp, *checked))


def parse_push(payload: Any, now: float) -> list[SampleGroup]:
    """Turn a decoded `/ingest` body (an object or a non-empty array of them) into samples.

    All or nothing: raises PushInvalid listing every problem if any part is invalid.
    """
    errors: list[FieldError] = []
    samples: list[SampleGroup] = []
    if isinstance(payload, list):
        if not payload:
            raise PushInvalid([FieldError("", "an array push must hold at least one object")])
        for index, item in enumerate(payload):
            parse_object(item, now, f"[{index}].", errors, samples)
            if len(errors) > MAX_ERRORS:
                break
    else:
        parse_object(payload, now, "", errors, samples)
    if errors:
        raise PushInvalid(errors)
    return samples


def push_source(payload: Any) -> str | None:
    """The source a push names, when it names exactly one valid one (for rejection counters)."""
    items = payload if isinstance(payload, list) else [payload]
    named = [item.get("source") for item in items[:MAX_ERRORS] if isinstance(item, dict)]
    sources = {source for source in named if isinstance(source, str)}
    if len(sources) != 1 or len(named) != len(items[:MAX_ERRORS]):
        return None
    source = sources.pop()
    return source if SOURCE_RE.fullmatch(source) else None
