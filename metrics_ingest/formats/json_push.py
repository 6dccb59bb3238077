"""The Worker's JSON push (`/ingest`): a decoded body in, samples or every error out."""

from __future__ import annotations

import math
import re
from typing import Any

from metrics_ingest.formats.fields import (
    check_labels,
    check_metric_name,
    check_source,
    check_timestamp,
    check_value,
)
from metrics_ingest.model import (
    MAX_ERRORS,
    MAX_METRIC_NAME,
    RESERVED_PREFIX,
    SOURCE_RE,
    FieldError,
    PushInvalid,
    SampleGroup,
    shorten,
)

# Every name of a metrics object at once, newline-joined: one C-level match on the hot path.
METRIC_NAMES_RE = re.compile(rf"(?:[a-zA-Z_:][a-zA-Z0-9_:]{{0,{MAX_METRIC_NAME - 1}}}\n)+")
NUMBER_TYPES = frozenset({int, float})


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
