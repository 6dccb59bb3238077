"""Field checks every push format shares: source, timestamp bounds, metric and label names,
values. Each appends what is wrong to an error list and returns the checked value or None."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from metrics_ingest.model import (
    DIGITS_RE,
    FUTURE_LIMIT_SECONDS,
    LABEL_NAME_RE,
    MAX_LABEL_VALUE,
    MAX_LABELS,
    MAX_METRIC_NAME,
    METRIC_NAME_RE,
    PAST_LIMIT_SECONDS,
    RESERVED_PREFIX,
    SOURCE_RE,
    BodyRefused,
    FieldError,
    canonical_labels,
    shorten,
)


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


def utf8(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyRefused(400, "the body is not UTF-8 text") from None


# Why a metric of an accepted push was skipped: the `reason` of the skipped-samples counter.
INVALID_NAME = "invalid_name"
RESERVED_NAME = "reserved_name"
NOT_A_NUMBER = "not_a_number"
NON_FINITE = "non_finite"


class Skip(NamedTuple):
    """A metric left out of an accepted push: where, why in words, and the counter's reason."""

    path: str
    error: str
    reason: str


def metric_name_problem(name: str) -> tuple[str, str] | None:
    """(reason, words) when `name` cannot be stored as a metric name, else None."""
    if len(name) > MAX_METRIC_NAME:
        return INVALID_NAME, f"metric name is longer than {MAX_METRIC_NAME} characters"
    if not METRIC_NAME_RE.fullmatch(name):
        return INVALID_NAME, "metric name must match [a-zA-Z_:][a-zA-Z0-9_:]*"
    if name.startswith(RESERVED_PREFIX):
        return RESERVED_NAME, f"metric names starting {RESERVED_PREFIX} are reserved"
    return None


def number_of(value: Any) -> float | tuple[str, str]:
    """The value as a float, or (reason, words) when it is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return NOT_A_NUMBER, "must be a number"
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        return NON_FINITE, "must be a finite number"
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
