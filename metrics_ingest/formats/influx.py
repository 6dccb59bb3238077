"""Pure parsing of the Influx line protocol (what Telegraf and influxdb-client write) into
samples: `<measurement>_<field>` becomes the metric name, tags become labels."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from metrics_ingest.formats.fields import check_timestamp
from metrics_ingest.model import (
    MAX_ERRORS,
    MAX_LABEL_VALUE,
    MAX_LABELS,
    MAX_METRIC_NAME,
    RESERVED_PREFIX,
    SOURCE_RE,
    FieldError,
    GroupKey,
    PushInvalid,
    SampleGroup,
    canonical_labels,
    group_for,
    shorten,
)

# (multiplier, divisor) from each precision to seconds, v1 (`n`, `u`) and v2 (`ns`, `us`)
# spellings; integer arithmetic, so 1795000000000000000 ns is exactly 1795000000 s.
PRECISIONS = {"n": (1, 10**9), "ns": (1, 10**9), "u": (1, 10**6), "us": (1, 10**6),
              "ms": (1, 1000), "s": (1, 1), "m": (60, 1), "h": (3600, 1)}
NAME_INVALID_RE = re.compile(r"[^a-zA-Z0-9_:]")
LABEL_INVALID_RE = re.compile(r"[^a-zA-Z0-9_]")
TRUE = frozenset({"t", "T", "true", "True", "TRUE"})
FALSE = frozenset({"f", "F", "false", "False", "FALSE"})
NUMBER_RE = re.compile(r"[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)")
INTEGER_RE = re.compile(r"[+-]?\d+[iu]")
TIMESTAMP_RE = re.compile(r"-?\d{1,19}")


class LineError(ValueError):
    """A malformed line; the message says what, the caller adds the line number."""


def metric_name(measurement: str, field: str) -> str:
    """`<measurement>_<field>` in the Prometheus charset: other characters become `_`, and a
    leading digit gets a `_` in front (`cpu`, `usage idle` -> `cpu_usage_idle`)."""
    name = NAME_INVALID_RE.sub("_", f"{measurement}_{field}")
    return "_" + name if name[0].isdigit() else name


def label_name(tag: str) -> str:
    """A tag key in the label charset; `__`-prefixed keys (reserved) become `tag_...`."""
    name = LABEL_INVALID_RE.sub("_", tag)
    if name.startswith("__"):
        return "tag_" + name.lstrip("_")
    return "_" + name if name[0].isdigit() else name


def split_unescaped(text: str, separator: str, limit: int = -1) -> list[str]:
    """Split on `separator` where it is not backslash-escaped and not inside double quotes."""
    parts: list[str] = []
    start = 0
    index = 0
    quoted = False
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char == '"':
            quoted = not quoted
        elif char == separator and not quoted and (limit < 0 or len(parts) < limit):
            parts.append(text[start:index])
            start = index + 1
        index += 1
    parts.append(text[start:])
    return parts


def key_value(pair: str, what: str, escaped: bool) -> tuple[str, str]:
    """Split `key=value` on the first `=` (the first unescaped one when `escaped`)."""
    if escaped:
        parts = split_unescaped(pair, "=", limit=1)
    else:
        key, sep, value = pair.partition("=")
        parts = [key, value] if sep else [key]
    if len(parts) != 2 or not parts[0]:
        raise LineError(f"{what} {shorten(pair, 32)!r} is not key=value")
    return parts[0], parts[1]


def unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text) if "\\" in text else text


def field_value(raw: str) -> float:
    if not raw:
        raise LineError("a field has no value")
    if raw[0] == '"':
        raise LineError("string fields are not metrics; drop or convert them (e.g. Telegraf "
                        "fielddrop or processors.converter)")
    if raw in TRUE:
        return 1.0
    if raw in FALSE:
        return 0.0
    if INTEGER_RE.fullmatch(raw):
        return float(int(raw[:-1]))
    if NUMBER_RE.fullmatch(raw):
        value = float(raw)
        if math.isfinite(value):
            return value
    raise LineError(f"field value {shorten(raw, 32)!r} is not a number or boolean")


@dataclass(frozen=True)
class Line:
    measurement: str
    tags: dict[str, str]
    fields: dict[str, float]
    timestamp: int | None  # in the request's precision


def parse_line(text: str) -> Line:
    """`measurement[,tag=value...] field=value[,...] [timestamp]`.

    A line without a backslash or a double quote (nearly all) is split with str methods at C
    speed; any other is split honouring escapes and quoted strings. Same result either way.
    """
    escaped = "\\" in text or '"' in text
    split: Callable[[str, str], list[str]] = split_unescaped if escaped else str.split
    clean: Callable[[str], str] = unescape if escaped else str  # str(s) is s, at C cost
    parts = [part for part in split(text, " ") if part]
    if len(parts) not in (2, 3):
        raise LineError("expected `measurement[,tag=value...] field=value[,...] [timestamp]`")
    head = split(parts[0], ",")
    measurement = clean(head[0])
    if not measurement:
        raise LineError("the measurement name is empty")
    tags: dict[str, str] = {}
    for pair in head[1:]:
        key, value = key_value(pair, "tag", escaped)
        if not value:
            raise LineError(f"tag {shorten(pair, 32)!r} has no value")
        tags[clean(key)] = clean(value)
    fields: dict[str, float] = {}
    for pair in split(parts[1], ","):
        key, value = key_value(pair, "field", escaped)
        fields[clean(key)] = field_value(value)
    timestamp = None
    if len(parts) == 3:
        if not TIMESTAMP_RE.fullmatch(parts[2]):
            raise LineError(f"timestamp {shorten(parts[2], 32)!r} is not an integer")
        timestamp = int(parts[2])
    return Line(measurement, tags, fields, timestamp)


def parse_body(
    body: str, precision: str, default_source: str | None, now: float
) -> list[SampleGroup]:
    """Every line of a write, all or nothing: raises PushInvalid with `line N` paths.

    The source is the line's `source` tag, else `default_source` (`?source=`, else the v1
    `db` or v2 `bucket`). Blank lines and `#` comments are skipped.
    """
    scale = PRECISIONS[precision]
    errors: list[FieldError] = []
    groups: dict[GroupKey, SampleGroup] = {}
    names = Names()
    for number, raw_line in enumerate(body.splitlines(), start=1):
        text = raw_line.strip()
        if not text or text.startswith("#"):
            continue
        where = f"line {number}"
        try:
            line = parse_line(text)
        except LineError as exc:
            errors.append(FieldError(where, str(exc)))
        else:
            add_line(line, scale, default_source, now, where, errors, names, groups)
        if len(errors) >= MAX_ERRORS:
            break
    if errors:
        raise PushInvalid(errors)
    if not groups:
        raise PushInvalid([FieldError("", "the body holds no line")])
    return list(groups.values())


@dataclass
class Names:
    """Per-body memo: a write repeats the same measurements, fields and tag sets, so each is
    sanitised and validated once. Tag sets map to (source, canonical labels, error)."""

    metrics: dict[tuple[str, str], str] = field(default_factory=dict)
    tag_sets: dict[tuple[tuple[str, str], ...], tuple[str | None, str, str | None]] = field(
        default_factory=dict)

    def metric(self, measurement: str, field_key: str) -> str:
        key = (measurement, field_key)
        name = self.metrics.get(key)
        if name is None:
            name = self.metrics[key] = metric_name(measurement, field_key)
        return name

    def tag_set(self, tags: dict[str, str],
                default_source: str | None) -> tuple[str | None, str, str | None]:
        key = tuple(tags.items())
        known = self.tag_sets.get(key)
        if known is None:
            known = self.tag_sets[key] = resolve_tags(tags, default_source)
        return known


def resolve_tags(tags: dict[str, str],
                 default_source: str | None) -> tuple[str | None, str, str | None]:
    """(source, canonical labels, error or None) for one tag set."""
    remaining = dict(tags)
    source = remaining.pop("source", None) or default_source
    if source is None or not SOURCE_RE.fullmatch(source):
        return None, "", ("no valid source: add a `source` tag or ?source=, 1-64 characters "
                          "of A-Z a-z 0-9 _ . -")
    if len(remaining) > MAX_LABELS:
        return None, "", f"more than {MAX_LABELS} tags"
    labels: dict[str, str] = {}
    for key, value in remaining.items():
        if len(value) > MAX_LABEL_VALUE:
            return None, "", f"tag {shorten(key)} is longer than {MAX_LABEL_VALUE} characters"
        labels[label_name(key)] = value
    return source, canonical_labels(labels), None


def add_line(line: Line, scale: tuple[int, int], default_source: str | None, now: float,
             where: str, errors: list[FieldError], names: Names,
             groups: dict[GroupKey, SampleGroup]) -> None:
    """Validate one parsed line and add its fields to the group of its (source, labels,
    second); lines sharing those become one group (fewer, larger groups for the writer)."""
    source, labels, problem = names.tag_set(line.tags, default_source)
    if problem is not None:
        errors.append(FieldError(where, problem))
        return
    metric_names = [names.metric(line.measurement, key) for key in line.fields]
    for name in metric_names:
        if len(name) > MAX_METRIC_NAME or name.startswith(RESERVED_PREFIX):
            errors.append(FieldError(where, f"metric name {shorten(name)} is too long or "
                                            "reserved"))
            return
    multiplier, divisor = scale
    raw_seconds = None if line.timestamp is None else line.timestamp * multiplier // divisor
    timestamp = check_timestamp(raw_seconds, now, where, errors)
    if timestamp is None or source is None:
        return
    group = group_for(groups, source, labels, timestamp)
    group.names.extend(metric_names)
    group.values.extend(line.fields.values())
