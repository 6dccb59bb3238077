"""Pure parsing of the Influx line protocol (what Telegraf and influxdb-client write) into
samples: `<measurement>_<field>` becomes the metric name, tags become labels."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from metrics_ingest.validation import (
    MAX_ERRORS,
    MAX_LABEL_VALUE,
    MAX_LABELS,
    MAX_METRIC_NAME,
    RESERVED_PREFIX,
    SOURCE_RE,
    FieldError,
    PushInvalid,
    SampleGroup,
    canonical_labels,
    check_timestamp,
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


def key_value(pair: str, what: str) -> tuple[str, str]:
    """Split `key=value` on the first `=` that is not escaped."""
    parts = split_unescaped(pair, "=", limit=1)
    if len(parts) != 2 or not parts[0]:
        raise LineError(f"{what} {shorten(pair, 32)!r} is not key=value")
    return parts[0], parts[1]


def unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


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
    # measurement[,tags] fields [timestamp]: spaces separate the three parts
    parts = split_unescaped(text, " ")
    parts = [part for part in parts if part != ""]
    if len(parts) not in (2, 3):
        raise LineError("expected `measurement[,tag=value...] field=value[,...] [timestamp]`")
    head = split_unescaped(parts[0], ",")
    measurement = unescape(head[0])
    if not measurement:
        raise LineError("the measurement name is empty")
    tags: dict[str, str] = {}
    for pair in head[1:]:
        key, value = key_value(pair, "tag")
        if not value:
            raise LineError(f"tag {shorten(pair, 32)!r} has no value")
        tags[unescape(key)] = unescape(value)
    fields: dict[str, float] = {}
    for pair in split_unescaped(parts[1], ","):
        key, value = key_value(pair, "field")
        fields[unescape(key)] = field_value(value)
    timestamp = None
    if len(parts) == 3:
        if not re.fullmatch(r"-?\d{1,19}", parts[2]):
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
    groups: list[SampleGroup] = []
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
            group = line_group(line, scale, default_source, now, where, errors)
            if group is not None:
                groups.append(group)
        if len(errors) >= MAX_ERRORS:
            break
    if errors:
        raise PushInvalid(errors)
    if not groups:
        raise PushInvalid([FieldError("", "the body holds no line")])
    return groups


def line_group(line: Line, scale: tuple[int, int], default_source: str | None, now: float,
               where: str, errors: list[FieldError]) -> SampleGroup | None:
    before = len(errors)
    tags = dict(line.tags)
    source = tags.pop("source", None) or default_source
    if source is None or not SOURCE_RE.fullmatch(source):
        errors.append(FieldError(where, "no valid source: add a `source` tag or ?source=, "
                                        "1-64 characters of A-Z a-z 0-9 _ . -"))
    labels: dict[str, str] = {}
    for key, value in tags.items():
        name = label_name(key)
        if len(value) > MAX_LABEL_VALUE:
            errors.append(FieldError(where, f"tag {shorten(key)} is longer than "
                                            f"{MAX_LABEL_VALUE} characters"))
        labels[name] = value
    if len(labels) > MAX_LABELS:
        errors.append(FieldError(where, f"more than {MAX_LABELS} tags"))
    names = [metric_name(line.measurement, field) for field in line.fields]
    for name in names:
        if len(name) > MAX_METRIC_NAME or name.startswith(RESERVED_PREFIX):
            errors.append(FieldError(where, f"metric name {shorten(name)} is too long or "
                                            "reserved"))
    multiplier, divisor = scale
    raw_seconds = None if line.timestamp is None else line.timestamp * multiplier // divisor
    timestamp = check_timestamp(raw_seconds, now, where, errors)
    if len(errors) > before or timestamp is None or source is None:
        return None
    return SampleGroup(source, canonical_labels(labels), timestamp, names,
                       list(line.fields.values()))
