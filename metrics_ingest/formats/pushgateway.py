"""Pure parsing for the Pushgateway-compatible API: the grouping path (with `@base64` parts) and
Prometheus text bodies (formats/textformat.py) into samples, families and the group operation."""

from __future__ import annotations

import base64
import binascii
import math
from decimal import Decimal
from typing import NamedTuple, cast

from metrics_ingest.formats import textformat
from metrics_ingest.formats.fields import utf8
from metrics_ingest.model import (
    LABEL_NAME_RE,
    MAX_ERRORS,
    MAX_LABEL_VALUE,
    MAX_LABELS,
    METRIC_NAME_RE,
    RESERVED_PREFIX,
    SOURCE_RE,
    FamilyMeta,
    FamilyType,
    FieldError,
    Grouping,
    GroupKey,
    GroupOp,
    GroupPush,
    Parsed,
    PushInvalid,
    SampleGroup,
    canonical_labels,
    group_for,
    shorten,
    too_many_samples,
)


def go_float(value: float) -> str:
    """A float as Go's strconv.FormatFloat(v, 'g', -1, 64) writes it, which is how the
    Pushgateway (and Prometheus' own clients) print bucket bounds and quantiles: `1`, `0.25`,
    `1e+06`, `+Inf`. Python's repr would give `1.0`, `1000000.0`: other label values."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits))
    point = len(text) + exponent  # position of the decimal point within `text`
    exp = point - 1
    if exp < -4 or exp >= 6:  # Go: %e below 1e-4 or from 1e6 on, for the shortest form
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        formatted = f"{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    elif point <= 0:
        formatted = "0." + "0" * -point + text
    elif point >= len(text):
        formatted = text + "0" * (point - len(text))
    else:
        formatted = text[:point] + "." + text[point:]
    return ("-" if sign else "") + formatted


# Labels the Pushgateway parses as numbers and prints back canonically, by family type.
NUMERIC_LABELS = {"histogram": "le", "gaugehistogram": "le", "summary": "quantile"}


def decode_part(text: str, encoded: bool, what: str) -> str:
    if not encoded:
        return text
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        raise PushInvalid([FieldError(what, "is not valid URL-safe base64 of UTF-8")]) from None


def parse_grouping(path: str) -> Grouping:
    """`job/<job>{/<label>/<value>}` (after `/metrics/`), any name with `@base64` taking a
    URL-safe base64 value, as the Pushgateway defines them."""
    parts = path.split("/")
    if len(parts) < 2 or len(parts) % 2:
        raise PushInvalid([FieldError("path", "must be /metrics/job/<job>{/<label>/<value>}")])
    labels: dict[str, str] = {}
    job: str | None = None
    for raw_name, raw_value in zip(parts[::2], parts[1::2], strict=True):
        name, _, suffix = raw_name.partition("@")
        if suffix not in ("", "base64"):
            raise PushInvalid([FieldError("path", f"unknown encoding @{shorten(suffix)}")])
        value = decode_part(raw_value, suffix == "base64", f"path label {shorten(name)}")
        if job is None:
            if name != "job":
                raise PushInvalid([FieldError("path", "must start with job/<job>")])
            job = value
            continue
        if not LABEL_NAME_RE.fullmatch(name) or name.startswith("__") or name in (
                "job", "source"):
            raise PushInvalid([FieldError(f"path label {shorten(name)}",
                                          "is not a usable label name")])
        if not value or len(value) > MAX_LABEL_VALUE:
            raise PushInvalid([FieldError(f"path label {name}",
                                          f"needs a value of 1-{MAX_LABEL_VALUE} characters")])
        labels[name] = value
    if job is None or not SOURCE_RE.fullmatch(job):
        raise PushInvalid([FieldError("job", "must be 1-64 characters of A-Z a-z 0-9 _ . - "
                                             "(it becomes the source)")])
    return Grouping(job, labels)


# The Pushgateway's own per-group families: a pushed family of these names is replaced.
GROUP_TIME_FAMILIES = frozenset({"push_time_seconds", "push_failure_time_seconds"})


class Refused(PushInvalid):
    """A push the Pushgateway refuses and records as the group's failed push
    (push_failure_time_seconds): samples carrying their own timestamps."""


def series_labels(sample_labels: dict[str, str], grouping: Grouping) -> dict[str, str]:
    """A pushed sample's labels as the Pushgateway exports them: the grouping labels (and
    the job) win over the body's, and `instance=""` is set when there is none, so that
    Prometheus with `honor_labels: true` does not attach the scrape target's instance. A
    body label named `source` (which every stored series carries) is kept as
    `exported_source`."""
    labels = {("exported_source" if name == "source" else name): value
              for name, value in sample_labels.items() if value}
    labels.update(grouping.labels)
    labels["job"] = grouping.source
    labels.setdefault("instance", "")
    return labels


class GroupParams(NamedTuple):
    op: GroupOp
    grouping: Grouping
    when: float  # the time the samples carry
    max_samples: int
    ttl: float | None = None  # `?ttl=`: the group's own time to live, in seconds


def parse_group_push(body: bytes, params: GroupParams, now: float) -> Parsed:
    """A PUT, POST or DELETE of the Pushgateway API. A push the Pushgateway would record as
    failed (samples with timestamps) comes back as a `fail` operation with its refusal."""
    if params.op == "delete":
        return Parsed([], GroupPush("delete", params.grouping))
    try:
        parsed = parse_text(utf8(body), params.grouping, params.when, params.op,
                            params.max_samples)
        if parsed.group is not None:
            parsed.group.ttl = params.ttl
        return parsed
    except Refused as exc:
        return Parsed([], GroupPush("fail", params.grouping), refusal=exc)


def parse_text(body: str, grouping: Grouping, now: float, op: GroupOp,
               max_samples: int | None = None) -> Parsed:
    """Samples of a text-format push, carrying the push time, with the families' TYPE and
    HELP; refuses with PushInvalid, or with Refused where the Pushgateway records a failed
    push (samples with timestamps of their own)."""
    try:
        families = textformat.parse(body, max_samples)
    except textformat.TooManySamples as exc:
        assert max_samples is not None
        raise too_many_samples(exc.count, max_samples, grouping.source) from None
    except textformat.TextFormatError as exc:
        raise PushInvalid([FieldError("body", f"is not Prometheus text format: {exc}")],
                          grouping.source) from None
    errors: list[FieldError] = []
    stamped: list[FieldError] = []
    merged: dict[GroupKey, SampleGroup] = {}
    push = GroupPush(op, grouping)
    declared: dict[str, FamilyMeta] = {}
    skipped = 0
    stamp = int(now)
    for family in families:
        if family.name in GROUP_TIME_FAMILIES:
            continue
        kind = cast(FamilyType, family.type)
        known = declared.get(family.name)
        if known is not None and known.type != kind:
            errors.append(FieldError(f"family {shorten(family.name)}",
                                     f"is declared twice, as {known.type} and {kind}"))
        declared[family.name] = FamilyMeta(kind, family.help)
        push.pushed_families.add(family.name)
        for sample_name, sample_labels, sample_value, has_stamp in family.samples:
            where = f"sample {shorten(sample_name)}"
            if has_stamp:
                stamped.append(FieldError(where, "pushed metrics must not have timestamps"))
                continue
            if not METRIC_NAME_RE.fullmatch(sample_name) or sample_name.startswith(
                    RESERVED_PREFIX):
                errors.append(FieldError(where, "is not a usable metric name"))
                continue
            if not math.isfinite(sample_value):
                skipped += 1  # e.g. a summary quantile before any observation
                continue
            labels = series_labels(sample_labels, grouping)
            numeric = NUMERIC_LABELS.get(kind)
            if numeric in labels:
                try:
                    labels[numeric] = go_float(float(labels[numeric]))
                except ValueError:
                    errors.append(FieldError(where, f"{numeric} is not a number"))
                    continue
            if len(labels) > MAX_LABELS or any(len(v) > MAX_LABEL_VALUE
                                               for v in labels.values()):
                errors.append(FieldError(where, f"has more than {MAX_LABELS} labels or a "
                                                "label value that is too long"))
                continue
            group = group_for(merged, grouping.source, canonical_labels(labels), stamp)
            group.names.append(sample_name)
            group.values.append(sample_value)
            push.families[sample_name] = family.name
        if len(errors) >= MAX_ERRORS:
            break
    if errors:
        raise PushInvalid(errors, grouping.source)
    if stamped:
        raise Refused(stamped, grouping.source)
    counts = {("non_finite", grouping.source): skipped} if skipped else None
    return Parsed(list(merged.values()), push, skip_counts=counts, families=declared,
                  typing="strict")
