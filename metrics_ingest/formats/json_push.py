"""The Worker's JSON push (`/ingest`): a decoded body in, samples or every error out."""

from __future__ import annotations

import math
import re
from typing import Any, NamedTuple

import orjson

from metrics_ingest.formats.fields import (
    Skip,
    check_labels,
    check_source,
    check_timestamp,
    metric_name_problem,
    number_of,
)
from metrics_ingest.model import (
    MAX_ERRORS,
    MAX_METRIC_NAME,
    RESERVED_PREFIX,
    SOURCE_RE,
    BodyRefused,
    FieldError,
    Parsed,
    PushInvalid,
    SampleGroup,
    SkipCounts,
    shorten,
    too_many_samples,
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


def checked_metrics(metrics: dict[str, Any], prefix: str,
                    skips: list[Skip]) -> tuple[list[str], list[float]]:
    """The slow path: every metric checked on its own; a bad name or value is skipped (as the
    Worker skipped non-numeric values) and recorded."""
    names: list[str] = []
    values: list[float] = []
    for name, raw in metrics.items():
        problem = metric_name_problem(name)
        if problem is None:
            value = number_of(raw)
            if isinstance(value, float):
                names.append(name)
                values.append(value)
                continue
            problem = value
        skips.append(Skip(f"{prefix}metrics.{shorten(name)}", problem[1], problem[0]))
    return names, values


def parse_object(payload: Any, now: float, prefix: str, errors: list[FieldError],
                 groups: list[SampleGroup], skips: list[Skip]) -> None:
    """Validate one push object, appending its samples and skips (when valid) or its errors."""
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
    mine: list[Skip] = []
    checked = fast_metrics(metrics) or checked_metrics(metrics, prefix, mine)
    if not checked[0]:
        errors.append(FieldError(f"{prefix}metrics", "nothing left to store: no metric has a "
                                                     "valid name and a finite number"))
        errors += [FieldError(skip.path, skip.error) for skip in mine[:MAX_ERRORS]]
        return
    skips += mine
    if len(errors) > before or source is None or timestamp is None or labels is None:
        return
    groups.append(SampleGroup(source, labels, timestamp, *checked))


def parse_push(payload: Any, now: float, strict: bool = False) -> Parsed:
    """Turn a decoded `/ingest` body (an object or a non-empty array of them) into samples.

    Push-level problems (source, timestamp, labels, the metrics object, nothing left to
    store) raise PushInvalid listing every one found, and nothing is stored. A metric with an
    invalid name or a value that is not a finite number is skipped and listed; with
    `strict`, any such metric is a PushInvalid as well (all or nothing).
    """
    errors: list[FieldError] = []
    groups: list[SampleGroup] = []
    skips: list[Skip] = []
    if isinstance(payload, list):
        if not payload:
            raise PushInvalid([FieldError("", "an array push must hold at least one object")])
        for index, item in enumerate(payload):
            parse_object(item, now, f"[{index}].", errors, groups, skips)
            if len(errors) > MAX_ERRORS:
                break
    else:
        parse_object(payload, now, "", errors, groups, skips)
    if strict and skips:
        errors += [FieldError(skip.path, skip.error) for skip in skips]
    if errors:  # (a skip of an object with push-level problems is not listed unless strict)
        raise PushInvalid(errors)
    if not skips:
        return Parsed(groups)
    return Parsed(groups, skipped=[FieldError(skip.path, skip.error)
                                   for skip in skips[:MAX_ERRORS]],
                  skip_counts=count_skips(skips, groups))


def count_skips(skips: list[Skip], groups: list[SampleGroup]) -> SkipCounts:
    """Skips by (reason, source); a skip's object is found by its path prefix ([i].)."""
    counts: SkipCounts = {}
    single = groups[0].source if len({group.source for group in groups}) == 1 else None
    for skip in skips:
        source = single or source_at(skip.path, groups)
        key = (skip.reason, source)
        counts[key] = counts.get(key, 0) + 1
    return counts


def source_at(path: str, groups: list[SampleGroup]) -> str:
    """The source of the array item a skip path names (`[3].metrics.x`)."""
    index = int(path[1:path.index("]")])
    return groups[index].source if index < len(groups) else groups[-1].source


class JsonParams(NamedTuple):
    strict: bool
    max_samples: int


# Bodies larger than this have their samples counted before they are validated, so that
# an oversized push is refused (413) without building what it would store.
COUNT_FIRST_BYTES = 64 * 1024


def parse_json_body(body: bytes, params: JsonParams, now: float) -> Parsed:
    """An `/ingest` body: JSON whatever the Content-Type says (as the Worker read it)."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BodyRefused(400, f"body is not valid JSON: {exc}") from None
    if len(body) > COUNT_FIRST_BYTES:
        count = metric_count(payload)
        if count > params.max_samples:
            raise too_many_samples(count, params.max_samples, push_source(payload))
    try:
        return parse_push(payload, now, params.strict)
    except PushInvalid as exc:
        exc.source = push_source(payload)
        raise


def metric_count(payload: Any) -> int:
    items = payload if isinstance(payload, list) else [payload]
    return sum(len(item["metrics"]) for item in items
               if isinstance(item, dict) and isinstance(item.get("metrics"), dict))


def push_source(payload: Any) -> str | None:
    """The source a push names, when it names exactly one valid one (for rejection counters)."""
    items = payload if isinstance(payload, list) else [payload]
    named = [item.get("source") for item in items[:MAX_ERRORS] if isinstance(item, dict)]
    sources = {source for source in named if isinstance(source, str)}
    if len(sources) != 1 or len(named) != len(items[:MAX_ERRORS]):
        return None
    source = sources.pop()
    return source if SOURCE_RE.fullmatch(source) else None
