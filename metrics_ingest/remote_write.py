"""Pure decoding of Prometheus remote_write 1.0: a snappy block holding a protobuf
WriteRequest, turned into samples. The three messages involved are decoded by hand (below)
rather than through generated protobuf bindings: it is ~60 lines and no extra dependency."""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

import cramjam

from metrics_ingest.validation import (
    FUTURE_LIMIT_SECONDS,
    LABEL_NAME_RE,
    MAX_LABEL_VALUE,
    MAX_LABELS,
    METRIC_NAME_RE,
    PAST_LIMIT_SECONDS,
    RESERVED_PREFIX,
    SampleGroup,
    canonical_labels,
)

SOURCE_INVALID_RE = re.compile(r"[^A-Za-z0-9_.\-]")
STALE_NAN_BITS = 0x7FF0000000000002  # Prometheus' staleness marker


class Undecodable(ValueError):
    """The body is not a snappy-compressed WriteRequest."""


def uncompressed_length(body: bytes) -> int:
    """The length a snappy block declares (a varint at its start), read before inflating."""
    length, _ = read_varint(body, 0)
    return length


def decompress(body: bytes, limit: int) -> bytes:
    if uncompressed_length(body) > limit:
        raise OverflowError(f"the inflated body would be larger than {limit} bytes")
    try:
        return bytes(cramjam.snappy.decompress_raw(body))
    except cramjam.DecompressionError as exc:
        raise Undecodable(f"not a snappy block: {exc}") from None


# -- protobuf wire format --------------------------------------------------------------------

def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise Undecodable("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def fields(data: bytes) -> Iterator[tuple[int, int, bytes | int]]:
    """(field number, wire type, value) of each field of one message; unknown ones included."""
    pos = 0
    end = len(data)
    while pos < end:
        key, pos = read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = read_varint(data, pos)
            yield number, wire, value
        elif wire == 1:
            if pos + 8 > end:
                raise Undecodable("truncated 64-bit field")
            yield number, wire, data[pos:pos + 8]
            pos += 8
        elif wire == 2:
            length, pos = read_varint(data, pos)
            if pos + length > end:
                raise Undecodable("truncated length-delimited field")
            yield number, wire, data[pos:pos + length]
            pos += length
        elif wire == 5:
            if pos + 4 > end:
                raise Undecodable("truncated 32-bit field")
            yield number, wire, data[pos:pos + 4]
            pos += 4
        else:
            raise Undecodable(f"unsupported wire type {wire}")


def as_bytes(value: bytes | int) -> bytes:
    if isinstance(value, int):
        raise Undecodable("expected a length-delimited field")
    return value


def label(data: bytes) -> tuple[str, str]:
    """Label { string name = 1; string value = 2; }"""
    name = value = ""
    for number, _, raw in fields(data):
        try:
            if number == 1:
                name = as_bytes(raw).decode("utf-8")
            elif number == 2:
                value = as_bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise Undecodable("a label is not UTF-8") from None
    return name, value


def sample(data: bytes) -> tuple[float, int]:
    """Sample { double value = 1; int64 timestamp = 2; } (timestamp in milliseconds)."""
    value = 0.0
    timestamp = 0
    for number, wire, raw in fields(data):
        if number == 1 and wire == 1:
            value = struct.unpack("<d", as_bytes(raw))[0]
        elif number == 2 and wire == 0 and isinstance(raw, int):
            timestamp = raw - (1 << 64) if raw >= 1 << 63 else raw  # int64 two's complement
    return value, timestamp


@dataclass
class Decoded:
    groups: list[SampleGroup]
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> samples skipped

    def drop(self, reason: str, count: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + count


def source_from(labels: dict[str, str], default: str) -> str:
    """`source` label, else `job`, else the default; made to fit the source charset."""
    raw = labels.pop("source", None) or labels.pop("job", None) or default
    return SOURCE_INVALID_RE.sub("_", raw)[:64] or default


def decode(payload: bytes, default_source: str, now: float) -> Decoded:
    """WriteRequest { repeated TimeSeries timeseries = 1; ... } -> samples.

    Raises Undecodable for a body that is not a WriteRequest (answered 400, not retried).
    Samples that cannot be stored are skipped and counted by reason rather than failing the
    batch: a remote_write sender drops a whole batch on a 4xx. Stale markers are skipped.
    """
    decoded = Decoded([])
    merged: dict[tuple[str, str, int], SampleGroup] = {}
    for number, _, raw in fields(payload):
        if number != 1:
            continue  # metadata (3) and anything newer
        labels: dict[str, str] = {}
        samples: list[tuple[float, int]] = []
        for series_field, wire, content in fields(as_bytes(raw)):
            if series_field == 1:
                name, label_value = label(as_bytes(content))
                labels[name] = label_value
            elif series_field == 2:
                samples.append(sample(as_bytes(content)))
            elif series_field == 4 and wire == 2:
                decoded.drop("native_histogram")
        metric = labels.pop("__name__", "")
        if not METRIC_NAME_RE.fullmatch(metric) or metric.startswith(RESERVED_PREFIX):
            decoded.drop("invalid_name", len(samples))
            continue
        source = source_from(labels, default_source)
        kept = {name: value for name, value in labels.items()
                if not name.startswith("__") and value}
        if (len(kept) > MAX_LABELS or not all(map(LABEL_NAME_RE.fullmatch, kept))
                or any(len(value) > MAX_LABEL_VALUE for value in kept.values())):
            decoded.drop("invalid_labels", len(samples))
            continue
        label_key = canonical_labels(kept)
        for value, millis in samples:
            if math.isnan(value) and struct.unpack("<Q", struct.pack("<d", value))[0] \
                    == STALE_NAN_BITS:
                decoded.drop("stale_marker")
                continue
            if not math.isfinite(value):
                decoded.drop("non_finite")
                continue
            seconds = millis // 1000
            if not now - PAST_LIMIT_SECONDS <= seconds <= now + FUTURE_LIMIT_SECONDS:
                decoded.drop("out_of_range")
                continue
            key = (source, label_key, seconds)
            group = merged.get(key)
            if group is None:
                group = merged[key] = SampleGroup(source, label_key, seconds, [], [])
                decoded.groups.append(group)
            group.names.append(metric)
            group.values.append(value)
    return decoded
