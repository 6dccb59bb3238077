"""An Influx line-protocol write (what Telegraf and influxdb-client send) into samples:
`<measurement>_<field>` becomes the metric name, tags become labels, and the write's
database or bucket is the source."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, NamedTuple

from metrics_ingest.formats.fields import utf8
from metrics_ingest.formats.lineprotocol import Line, LineError, parse_line
from metrics_ingest.model import (
    FUTURE_LIMIT_SECONDS,
    MAX_ERRORS,
    MAX_LABEL_VALUE,
    MAX_LABELS,
    MAX_METRIC_NAME,
    PAST_LIMIT_SECONDS,
    RESERVED_PREFIX,
    FieldError,
    GroupKey,
    Parsed,
    PushInvalid,
    SampleGroup,
    SkipCounts,
    canonical_labels,
    group_for,
    shorten,
    too_many_samples,
)

# (multiplier, divisor) from each precision to seconds, v1 (`n`, `u`) and v2 (`ns`, `us`)
# spellings; integer arithmetic, so 1795000000000000000 ns is exactly 1795000000 s.
PRECISIONS = {"n": (1, 10**9), "ns": (1, 10**9), "u": (1, 10**6), "us": (1, 10**6),
              "ms": (1, 1000), "s": (1, 1), "m": (60, 1), "h": (3600, 1)}
NAME_INVALID_RE = re.compile(r"[^a-zA-Z0-9_:]")
LABEL_INVALID_RE = re.compile(r"[^a-zA-Z0-9_]")
STRING_FIELD = "string_field"  # the skipped-samples reason for a string field
StringFields = Literal["skip", "reject"]


def metric_name(measurement: str, field_key: str) -> str:
    """`<measurement>_<field>` in the Prometheus charset: other characters become `_`, and a
    leading digit gets a `_` in front (`cpu`, `usage idle` -> `cpu_usage_idle`)."""
    name = NAME_INVALID_RE.sub("_", f"{measurement}_{field_key}")
    return "_" + name if name[0].isdigit() else name


def label_name(tag: str) -> str:
    """A tag key in the label charset; `__`-prefixed keys (reserved) become `tag_...`; the
    point's own `source` tag becomes `exported_source` (the write's source is the label)."""
    if tag == "source":
        return "exported_source"
    name = LABEL_INVALID_RE.sub("_", tag)
    if name.startswith("__"):
        return "tag_" + name.lstrip("_")
    return "_" + name if name[0].isdigit() else name


def utc(seconds: int) -> str:
    try:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return "out of range"


def time_error(raw: int, precision: str, seconds: int, now: float) -> str:
    """Why a timestamp is out of bounds, in the words that fix the usual mistake: seconds
    (or milliseconds) sent without `precision=`."""
    side = ("more than 365 days in the past" if seconds < now - PAST_LIMIT_SECONDS
            else "more than 1 hour in the future")
    words = (f"timestamp {raw} read with precision={precision} is {utc(seconds)}, {side} "
             f"(samples must lie within [now - 365 days, now + 1 hour])")
    for other in ("s", "ms", "us", "ns"):
        multiplier, divisor = PRECISIONS[other]
        if other != precision and in_bounds(raw * multiplier // divisor, now):
            return f"{words}; read with precision={other} it is {utc(raw // divisor)}: " \
                   f"add precision={other} to the URL"
    return words


def in_bounds(seconds: int, now: float) -> bool:
    return now - PAST_LIMIT_SECONDS <= seconds <= now + FUTURE_LIMIT_SECONDS


@dataclass
class Names:
    """Per-body memo: a write repeats the same measurements, fields and tag sets, so each is
    sanitised and validated once. Tag sets map to (canonical labels, error).

    Sanitising is not injective (`cpu-usage` and `cpu_usage` both become `cpu_usage`): two
    different names of one write that would become one metric or label are refused, naming
    both, instead of silently overwriting each other."""

    metrics: dict[tuple[str, str], str] = field(default_factory=dict)
    metric_origins: dict[str, tuple[str, str]] = field(default_factory=dict)
    label_origins: dict[str, str] = field(default_factory=dict)
    tag_sets: dict[tuple[tuple[str, str], ...], tuple[str, str | None]] = field(
        default_factory=dict)

    def metric(self, measurement: str, field_key: str) -> str:
        key = (measurement, field_key)
        name = self.metrics.get(key)
        if name is None:
            name = metric_name(measurement, field_key)
            origin = self.metric_origins.setdefault(name, key)
            if origin != key:
                raise LineError(f"field {shorten(field_key, 32)!r} of "
                                f"{shorten(measurement, 32)!r} and field "
                                f"{shorten(origin[1], 32)!r} of {shorten(origin[0], 32)!r} "
                                f"would both be the metric {shorten(name)}; rename one")
            self.metrics[key] = name
        return name

    def tag_set(self, tags: dict[str, str]) -> tuple[str, str | None]:
        key = tuple(tags.items())
        known = self.tag_sets.get(key)
        if known is None:
            known = self.tag_sets[key] = resolve_tags(tags, self.label_origins)
        return known


def resolve_tags(tags: dict[str, str],
                 origins: dict[str, str] | None = None) -> tuple[str, str | None]:
    """(canonical labels, error or None) for one tag set; `origins` holds which tag key each
    label came from so far in the write."""
    if len(tags) > MAX_LABELS:
        return "", f"more than {MAX_LABELS} tags"
    seen = {} if origins is None else origins
    labels: dict[str, str] = {}
    for key, value in tags.items():
        if len(value) > MAX_LABEL_VALUE:
            return "", f"tag {shorten(key)} is longer than {MAX_LABEL_VALUE} characters"
        name = label_name(key)
        origin = seen.setdefault(name, key)
        if origin != key:
            return "", (f"tags {shorten(origin, 32)!r} and {shorten(key, 32)!r} would both "
                        f"be the label {shorten(name)}; rename one")
        labels[name] = value
    return canonical_labels(labels), None


@dataclass
class Write:
    """One body on its way to samples."""

    source: str
    precision: str
    now: float
    strings: StringFields
    errors: list[FieldError] = field(default_factory=list)
    groups: dict[GroupKey, SampleGroup] = field(default_factory=dict)
    names: Names = field(default_factory=Names)
    string_fields: int = 0

    def add(self, line: Line, where: str) -> None:
        """Validate one parsed line and add its fields to the group of its (labels, second);
        lines sharing those become one group (fewer, larger groups for the writer)."""
        if line.strings and self.strings == "reject":
            self.errors.append(FieldError(where, f"string field {shorten(line.strings[0])} is "
                                                 "not a metric (METRICS_INFLUX_STRING_FIELDS="
                                                 "reject)"))
            return
        self.string_fields += len(line.strings)
        labels, problem = self.names.tag_set(line.tags)
        if problem is not None:
            self.errors.append(FieldError(where, problem))
            return
        try:
            metric_names = [self.names.metric(line.measurement, key) for key in line.fields]
        except LineError as exc:
            self.errors.append(FieldError(where, str(exc)))
            return
        for name in metric_names:
            if len(name) > MAX_METRIC_NAME or name.startswith(RESERVED_PREFIX):
                self.errors.append(FieldError(where, f"metric name {shorten(name)} is too "
                                                     "long or reserved"))
                return
        if line.timestamp is None:
            timestamp = int(self.now)
        else:
            multiplier, divisor = PRECISIONS[self.precision]
            timestamp = line.timestamp * multiplier // divisor
            if not in_bounds(timestamp, self.now):
                self.errors.append(FieldError(where, time_error(
                    line.timestamp, self.precision, timestamp, self.now)))
                return
        if metric_names:
            group = group_for(self.groups, self.source, labels, timestamp)
            group.names.extend(metric_names)
            group.values.extend(line.fields.values())


class InfluxParams(NamedTuple):
    precision: str
    source: str
    strings: StringFields
    max_samples: int


def parse_write(body: bytes, params: InfluxParams, now: float) -> Parsed:
    """A /write or /api/v2/write body."""
    return parse_body(utf8(body), params.precision, params.source, now, params.strings,
                      params.max_samples)


def parse_body(body: str, precision: str, source: str, now: float,
               strings: StringFields = "skip", max_samples: int | None = None) -> Parsed:
    """Every line of a write, all or nothing: raises PushInvalid with `line N` paths, or
    BodyRefused (413) as soon as more than `max_samples` fields are read.

    String fields are not metrics: they are skipped and counted (the line's numeric and
    boolean fields are stored), or refused with `strings="reject"`. Blank lines and `#`
    comments are skipped.
    """
    write = Write(source, precision, now, strings)
    lines = 0
    fields = 0
    for number, raw_line in enumerate(body.splitlines(), start=1):
        text = raw_line.strip()
        if not text or text.startswith("#"):
            continue
        lines += 1
        where = f"line {number}"
        try:
            line = parse_line(text)
        except LineError as exc:
            write.errors.append(FieldError(where, str(exc)))
        else:
            fields += len(line.fields)
            if max_samples is not None and fields > max_samples:
                raise too_many_samples(fields, max_samples, source)
            write.add(line, where)
        if len(write.errors) >= MAX_ERRORS:
            break
    if write.errors:
        raise PushInvalid(write.errors, source)
    if not lines:
        raise PushInvalid([FieldError("", "the body holds no line")], source)
    counts: SkipCounts | None = None
    if write.string_fields:
        counts = {(STRING_FIELD, source): write.string_fields}
    return Parsed(list(write.groups.values()), skip_counts=counts)
