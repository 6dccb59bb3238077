"""Rendering stored series as exposition text, with the TYPE and HELP their families were
pushed with; and the Pushgateway API's per-group push times.

Series are rendered under a *key*: their metric name, except the members of a histogram or
summary, which render under their family as one sorted whole. A counter's samples named
`<family>` and `<family>_total` are two keys, each with its own TYPE line, as text 0.0.4
names them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import orjson

from metrics_ingest.families import STRUCTURED, family_of
from metrics_ingest.formats.exposition import (
    INTEGRAL_LIMIT,
    TEXT,
    Format,
    format_value,
    label_block,
    series_block,
)
from metrics_ingest.model import FamilyMeta
from metrics_ingest.store import GroupTimes

# (id, metric_name, source, labels, head, value, timestamp, pinned): a stored series' newest
# sample, as the store reads it for /metrics; `head` is the line's `name{labels}`
ExportRow = tuple[int, str, str, str, str, float, int, int]
PUSH_TIME_HELP = "Last Unix time when changing this group in the Pushgateway succeeded."
PUSH_FAILURE_HELP = "Last Unix time when changing this group in the Pushgateway failed."
# A structured family's members: the label that orders them, and the order of the suffixes.
MEMBER_ORDER = {"histogram": ("le", {"_bucket": 0, "_count": 1, "_sum": 2}),
                "summary": ("quantile", {"": 0, "_count": 1, "_sum": 2})}


def render_lines(rows: Iterable[ExportRow], with_timestamps: bool, fmt: Format) -> list[str]:
    """Sample lines, in the order given; pinned series carry no timestamp. (The hottest loop
    of a scrape: a million series cost a million of these.)"""
    lines: list[str] = []
    append = lines.append
    scale = 1 if fmt.openmetrics else 1000
    low, high = -INTEGRAL_LIMIT, INTEGRAL_LIMIT
    for _, _, _, _, head, value, timestamp, pinned in rows:
        text = (str(int(value)) if value.is_integer() and low < value < high
                else format_value(value))
        if with_timestamps and not pinned:
            append(f"{head} {text} {timestamp * scale}")
        else:
            append(f"{head} {text}")
    return lines


def key_header(key: str, families: Mapping[str, FamilyMeta], sources: Iterable[str],
               present: Mapping[str, object], fmt: Format) -> list[str] | None:
    """The HELP and TYPE lines of a (non-structured) key, or None when `fmt` must leave the
    key out: OpenMetrics has no name for a counter sample without `_total` when the same
    counter also has `_total` samples (`present` holds the keys exported)."""
    family = family_of(key, families)
    meta = families.get(family)
    kind = meta.type if meta is not None else "gauge"
    help_text = meta.help if meta is not None and meta.help else (
        "Metric from " + ", ".join(sorted(set(sources))))
    if kind == "counter":
        if not fmt.openmetrics:
            return [fmt.help(key, help_text), f"# TYPE {key} counter"]
        if key.endswith("_total"):
            base = key.removesuffix("_total")
            return [fmt.help(base, help_text), f"# TYPE {base} counter"]
        if f"{key}_total" in present:
            return None
        return [fmt.help(key, help_text), f"# TYPE {key} unknown"]
    shown = "unknown" if fmt.openmetrics and kind == "untyped" else kind
    return [fmt.help(key, help_text), fmt.type(key, shown)]


def structured_order(name: str, kind: str, rows: Iterable[ExportRow]) -> list[ExportRow]:
    """A histogram's or summary's members grouped by label set (source and labels but `le` /
    `quantile`), buckets or quantiles in numeric order, then `_count`, `_sum`. Members that
    do not fit the structure (a `_bucket` without a numeric `le`) are left out: they would
    make the family unreadable."""
    label, suffixes = MEMBER_ORDER[kind]
    keyed = []
    for row in rows:
        order = suffixes.get(row[1][len(name):])
        if order is None:
            continue
        labels = orjson.loads(row[3]) if row[3] else {}
        bound = labels.pop(label, None)
        position = 0.0
        if order == 0:
            try:
                position = float(bound) if bound is not None else math.nan
            except ValueError:
                position = math.nan
            if math.isnan(position):
                continue
        rest = orjson.dumps(labels, option=orjson.OPT_SORT_KEYS)
        keyed.append(((row[2], rest, order, position), row))
    keyed.sort(key=lambda item: item[0])
    return [row for _, row in keyed]


def render_structured(name: str, meta: FamilyMeta, rows: Iterable[ExportRow],
                      with_timestamps: bool, fmt: Format = TEXT) -> list[str]:
    """A histogram or summary family, whole: its header, then its members in order."""
    ordered = structured_order(name, meta.type, rows)
    if not ordered:
        return []
    help_text = meta.help or "Metric from " + ", ".join(sorted({row[2] for row in ordered}))
    return [fmt.help(name, help_text), fmt.type(name, meta.type),
            *render_lines(ordered, with_timestamps, fmt)]


def is_structured(name: str, families: Mapping[str, FamilyMeta]) -> str | None:
    """The histogram or summary family a metric name belongs to, if any."""
    family = family_of(name, families)
    meta = families.get(family)
    return family if meta is not None and meta.type in STRUCTURED else None


def render_stored(rows: Iterable[tuple[str, str, str, float, int, int]], with_timestamps: bool,
                  fmt: Format = TEXT,
                  families: Mapping[str, FamilyMeta] | None = None) -> list[str]:
    """Lines for given stored series, (metric_name, source, labels, value, timestamp,
    pinned) each, key by key in name order and each key's series in the order given."""
    declared = families or {}
    by_key: dict[str, list[ExportRow]] = {}
    for number, (name, source, labels, value, timestamp, pinned) in enumerate(rows):
        key = is_structured(name, declared) or name
        by_key.setdefault(key, []).append(
            (number, name, source, labels, name + series_block(source, labels), value,
             timestamp, pinned))
    lines: list[str] = []
    for key, members in sorted(by_key.items()):
        structured = is_structured(key, declared)
        if structured == key:
            lines += render_structured(key, declared[key], members, with_timestamps, fmt)
            continue
        header = key_header(key, declared, (row[2] for row in members), by_key, fmt)
        if header is not None:
            lines += header + render_lines(members, with_timestamps, fmt)
    return lines


def group_labels(group: GroupTimes) -> str:
    labels = orjson.loads(group.grouping) if group.grouping else {}
    labels["job"] = group.source
    labels.setdefault("instance", "")
    return label_block([("source", group.source), *sorted(labels.items())])


def render_group_times(groups: Sequence[GroupTimes], fmt: Format = TEXT) -> list[str]:
    """`push_time_seconds` and `push_failure_time_seconds` of every Pushgateway-API group,
    labelled as the group's series are, as the Pushgateway exports them."""
    if not groups:
        return []
    ordered = sorted(groups, key=lambda group: (group.source, group.grouping))
    blocks = [group_labels(group) for group in ordered]
    lines = [fmt.help("push_time_seconds", PUSH_TIME_HELP),
             fmt.type("push_time_seconds", "gauge")]
    lines += [f"push_time_seconds{block} {format_value(group.pushed_at)}"
              for block, group in zip(blocks, ordered, strict=True)]
    lines += [fmt.help("push_failure_time_seconds", PUSH_FAILURE_HELP),
              fmt.type("push_failure_time_seconds", "gauge")]
    lines += [f"push_failure_time_seconds{block} {format_value(group.failed_at)}"
              for block, group in zip(blocks, ordered, strict=True)]
    return lines
