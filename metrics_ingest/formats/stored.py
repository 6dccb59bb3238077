"""Rendering stored series as exposition text, family by family, with the TYPE and HELP they
were pushed with; and the Pushgateway API's per-group push times."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import orjson

from metrics_ingest.families import family_of
from metrics_ingest.formats.exposition import (
    INTEGRAL_LIMIT,
    TEXT,
    Format,
    format_value,
    label_block,
)
from metrics_ingest.model import FamilyMeta
from metrics_ingest.store import GroupTimes

# (metric_name, source, labels, value, timestamp, pinned): a stored series' newest sample
Row = tuple[str, str, str, float, int, int]
PUSH_TIME_HELP = "Last Unix time when changing this group in the Pushgateway succeeded."
PUSH_FAILURE_HELP = "Last Unix time when changing this group in the Pushgateway failed."
# A structured family's members: the label that orders them, and the order of the suffixes.
MEMBER_ORDER = {"histogram": ("le", {"_bucket": 0, "_count": 1, "_sum": 2}),
                "summary": ("quantile", {"": 0, "_count": 1, "_sum": 2})}


def series_labels(source: str, labels: str) -> str:
    """`{source="...",name="value",...}` for a stored series; labels arrive as sorted-key JSON."""
    pairs = [("source", source)]
    if labels:
        pairs.extend(orjson.loads(labels).items())
    return label_block(pairs)


def sample_line(name: str, block: str, value: float, timestamp: int | None,
                fmt: Format) -> str:
    if value.is_integer() and -INTEGRAL_LIMIT < value < INTEGRAL_LIMIT:
        text = str(int(value))
    else:
        text = format_value(value)
    if timestamp is None:
        return f"{name}{block} {text}"
    return f"{name}{block} {text} {fmt.stamp(timestamp)}"


def structured_order(name: str, kind: str, members: Iterable[Row]) -> list[Row]:
    """A histogram's or summary's members grouped by label set (source and labels but `le` /
    `quantile`), buckets or quantiles in numeric order, then `_count`, `_sum`. Members that
    do not fit the structure (a `_bucket` without a numeric `le`) are left out: they would
    make the family unreadable."""
    label, suffixes = MEMBER_ORDER[kind]
    keyed = []
    for row in members:
        suffix = row[0][len(name):]
        order = suffixes.get(suffix)
        if order is None:
            continue
        labels = orjson.loads(row[2]) if row[2] else {}
        bound = labels.pop(label, None)
        if order == 0:
            try:
                position = float(bound) if bound is not None else math.nan
            except ValueError:
                position = math.nan
            if math.isnan(position):
                continue
        else:
            position = 0.0
        rest = orjson.dumps(labels, option=orjson.OPT_SORT_KEYS)
        keyed.append(((row[1], rest, order, position), row))
    keyed.sort(key=lambda item: item[0])
    return [row for _, row in keyed]


def render_family(name: str, meta: FamilyMeta | None, members: Sequence[Row],
                  with_timestamps: bool, blocks: dict[tuple[str, str], str],
                  fmt: Format = TEXT) -> list[str]:
    """The lines of one family. `members` are its series sorted by (metric_name, source,
    labels); `blocks` memoises each (source, labels)'s rendered label block."""
    if not members:
        return []
    kind = meta.type if meta is not None else "gauge"
    help_text = meta.help if meta is not None and meta.help else (
        "Metric from " + ", ".join(sorted({row[1] for row in members})))
    if kind in MEMBER_ORDER:
        ordered = structured_order(name, kind, members)
        header = [fmt.help(name, help_text), fmt.type(name, kind)]
    elif kind == "counter":
        return render_counter(name, help_text, members, with_timestamps, blocks, fmt)
    else:
        ordered = list(members)
        shown = "unknown" if fmt.openmetrics and kind == "untyped" else kind
        header = [fmt.help(name, help_text), fmt.type(name, shown)]
    if not ordered:
        return []
    lines = header
    for sample_name, source, labels, value, timestamp, pinned in ordered:
        block = blocks.get((source, labels))
        if block is None:
            block = blocks[(source, labels)] = series_labels(source, labels)
        stamp = timestamp if with_timestamps and not pinned else None
        lines.append(sample_line(sample_name, block, value, stamp, fmt))
    return lines


def render_counter(name: str, help_text: str, members: Sequence[Row], with_timestamps: bool,
                   blocks: dict[tuple[str, str], str], fmt: Format) -> list[str]:
    """A counter's samples are named `<family>` or `<family>_total`. Text 0.0.4 names each
    TYPE after its samples; OpenMetrics names the family without `_total` and needs its
    samples to carry it, so samples without `_total` are exported there as `unknown` (when
    no `_total` sample shares the family)."""
    by_name: dict[str, list[Row]] = {}
    for row in members:
        by_name.setdefault(row[0], []).append(row)
    lines: list[str] = []
    base = name.removesuffix("_total")
    for sample_name, rows in sorted(by_name.items()):
        if fmt.openmetrics:
            if sample_name.endswith("_total"):
                header = [fmt.help(base, help_text), f"# TYPE {base} counter"]
            elif f"{sample_name}_total" in by_name:
                continue
            else:
                header = [fmt.help(sample_name, help_text), f"# TYPE {sample_name} unknown"]
        else:
            header = [fmt.help(sample_name, help_text), f"# TYPE {sample_name} counter"]
        lines += header
        for _, source, labels, value, timestamp, pinned in rows:
            block = blocks.get((source, labels))
            if block is None:
                block = blocks[(source, labels)] = series_labels(source, labels)
            stamp = timestamp if with_timestamps and not pinned else None
            lines.append(sample_line(sample_name, block, value, stamp, fmt))
    return lines


def group_rows(rows: Iterable[Row],
               families: Mapping[str, FamilyMeta]) -> list[tuple[str, list[Row]]]:
    """Rows by family, families sorted by name, members in their input order."""
    grouped: dict[str, list[Row]] = {}
    for row in rows:
        grouped.setdefault(family_of(row[0], families), []).append(row)
    return sorted(grouped.items())


def render_stored(rows: Iterable[Row], with_timestamps: bool,
                  label_blocks: dict[tuple[str, str], str] | None = None,
                  fmt: Format = TEXT,
                  families: Mapping[str, FamilyMeta] | None = None) -> list[str]:
    """Lines for stored series (sorted by metric name, source, labels), family by family."""
    blocks = {} if label_blocks is None else label_blocks
    declared = families or {}
    lines: list[str] = []
    for name, members in group_rows(rows, declared):
        lines += render_family(name, declared.get(name), members, with_timestamps, blocks, fmt)
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
