"""Request bodies for the format workloads: Influx lines, Pushgateway text, and remote_write
WriteRequests (a protobuf encoder of the three messages involved; the tests use it too, as an
implementation independent of the service's decoder)."""

from __future__ import annotations

import struct
from pathlib import Path

import cramjam


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if not value:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def field(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def write_request(series: list[tuple[dict[str, str], list[tuple[float, int]]]],
                  metadata: list[tuple[int, str, str]] = ()) -> bytes:  # type: ignore[assignment]
    """A WriteRequest laid out as Prometheus' protobuf marshaller does; (value, ms) samples,
    and MetricMetadata entries as (MetricType number, family name, help)."""
    parts: list[bytes] = []
    for labels, samples in series:
        body = [field(1, field(1, k.encode()) + field(2, v.encode())) for k, v in labels.items()]
        body += [field(2, varint(1 << 3 | 1) + struct.pack("<d", value) + varint(2 << 3 | 0)
                       + varint(millis)) for value, millis in samples]
        parts.append(field(1, b"".join(body)))
    for kind, family, help_text in metadata:
        parts.append(field(3, varint(1 << 3 | 0) + varint(kind) + field(2, family.encode())
                           + field(4, help_text.encode())))
    return b"".join(parts)


def snappy(payload: bytes) -> bytes:
    return bytes(cramjam.snappy.compress_raw(payload))


def influx_body(timestamp: int) -> bytes:
    """1,000 lines (10 hosts x 100 measurements), one field each, second precision."""
    return "".join(f"bulk_metric_{m},host=h{h} v={m * h}.5 {timestamp}\n"
                   for h in range(1, 11) for m in range(1, 101)).encode()


def remote_write_body(timestamp: int) -> bytes:
    """1,000 series with one sample each, snappy-compressed."""
    return snappy(write_request([
        ({"__name__": f"bulk_metric_{m}", "job": "bulk", "host": f"h{h}"},
         [(m * h + 0.5, timestamp * 1000)]) for h in range(1, 11) for m in range(1, 101)]))


def pushgateway_body() -> bytes:
    return "".join(f'bulk_metric_{m}{{host="h{h}"}} {m * h}.5\n'
                   for h in range(1, 11) for m in range(1, 101)).encode()


def write_bodies(directory: Path, kind: str, count: int, first_timestamp: int) -> None:
    """`count` distinct bodies (one timestamp each) as body_0 ... for bench/wrk/files.lua."""
    directory.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        timestamp = first_timestamp + index
        if kind == "influx":
            body = influx_body(timestamp)
        elif kind == "remote_write":
            body = remote_write_body(timestamp)
        else:
            body = pushgateway_body()
        (directory / f"body_{index}").write_bytes(body)
