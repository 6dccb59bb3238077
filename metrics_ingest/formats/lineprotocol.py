"""The Influx line protocol, one line at a time:
`measurement[,tag=value...] field=value[,field=value...] [timestamp]`.

Escapes follow InfluxDB: in the measurement, tag keys, tag values and field keys a backslash
escapes a comma, a space or an equals sign; double quotes are plain characters there and
delimit only string field values, inside which `\\"` and `\\\\` are escapes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from metrics_ingest.model import shorten

TRUE = frozenset({"t", "T", "true", "True", "TRUE"})
FALSE = frozenset({"f", "F", "false", "False", "FALSE"})
NUMBER_RE = re.compile(r"[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)")
INTEGER_RE = re.compile(r"[+-]?\d+[iu]")
TIMESTAMP_RE = re.compile(r"-?\d{1,19}")
KEY_ESCAPE_RE = re.compile(r"\\([,= \\])")
STRING_ESCAPE_RE = re.compile(r'\\(["\\])')


class LineError(ValueError):
    """A malformed line; the message says what, the caller adds the line number."""


@dataclass(frozen=True)
class Line:
    measurement: str
    tags: dict[str, str]
    fields: dict[str, float]  # numeric and boolean fields
    strings: list[str]  # keys of string fields (not metrics; skipped or refused by the caller)
    timestamp: int | None  # in the request's precision


def number(raw: str) -> float:
    """A field value that is not a string: float, integer (`i`, `u`) or boolean."""
    if not raw:
        raise LineError("a field has no value")
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
    raise LineError(f"field value {shorten(raw, 32)!r} is not a number, boolean or string")


def parse_line(text: str) -> Line:
    """One stripped, non-empty line. A line without a backslash or a double quote (nearly all)
    is split with str methods at C speed; any other by the escape-aware scanner."""
    if "\\" in text or '"' in text:
        return scan_line(text)
    parts = text.split(" ")
    if len(parts) not in (2, 3):
        parts = [part for part in parts if part]
        if len(parts) not in (2, 3):
            raise LineError("expected `measurement[,tag=value...] field=value[,...] "
                            "[timestamp]`")
    head = parts[0].split(",")
    tags: dict[str, str] = {}
    for pair in head[1:]:
        key, sep, value = pair.partition("=")
        tags[check_key(key, sep, value, "tag")] = value
    fields: dict[str, float] = {}
    for pair in parts[1].split(","):
        key, sep, value = pair.partition("=")
        key = check_key(key, sep, value, "field")
        fields[key] = number(value)
    return Line(check_measurement(head[0]), tags, fields, [], timestamp_of(parts))


def check_key(key: str, sep: str, value: str, what: str) -> str:
    if not sep or not key:
        raise LineError(f"{what} {shorten(key + sep + value, 32)!r} is not key=value")
    if not value and what == "tag":
        raise LineError(f"tag {shorten(key, 32)!r} has no value")
    return key


def check_measurement(name: str) -> str:
    if not name:
        raise LineError("the measurement name is empty")
    return name


def timestamp_of(parts: list[str]) -> int | None:
    if len(parts) < 3:
        return None
    if not TIMESTAMP_RE.fullmatch(parts[2]):
        raise LineError(f"timestamp {shorten(parts[2], 32)!r} is not an integer")
    return int(parts[2])


def unescape_key(text: str) -> str:
    return KEY_ESCAPE_RE.sub(r"\1", text) if "\\" in text else text


def partition_escaped(text: str, separator: str) -> tuple[str, str, str]:
    """str.partition at the first `separator` that is not backslash-escaped."""
    index = 0
    while index < len(text):
        if text[index] == "\\":
            index += 2
        elif text[index] == separator:
            return text[:index], separator, text[index + 1:]
        else:
            index += 1
    return text, "", ""


def split_escaped(text: str, separator: str) -> list[str]:
    """Split on `separator` where it is not backslash-escaped (keys and tag values)."""
    parts: list[str] = []
    start = index = 0
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char == separator:
            parts.append(text[start:index])
            start = index + 1
        index += 1
    parts.append(text[start:])
    return parts


def scan_line(text: str) -> Line:
    """The escape-aware parse: series key, then fields (string values may hold anything but
    an unescaped quote), then the optional timestamp."""
    index = 0
    while index < len(text) and text[index] != " ":
        index += 2 if text[index] == "\\" else 1
    head = split_escaped(text[:index], ",")
    tags: dict[str, str] = {}
    for pair in head[1:]:
        key, sep, value = partition_escaped(pair, "=")
        tags[unescape_key(check_key(key, sep, value, "tag"))] = unescape_key(value)
    measurement = unescape_key(check_measurement(head[0]))
    while index < len(text) and text[index] == " ":
        index += 1
    fields: dict[str, float] = {}
    strings: list[str] = []
    while True:
        start = index
        while index < len(text) and text[index] not in "= ,":
            index += 2 if text[index] == "\\" else 1
        key = unescape_key(text[start:index])
        if index >= len(text) or text[index] != "=" or not key:
            raise LineError(f"field {shorten(text[start:index + 1], 32)!r} is not key=value")
        index += 1
        if index < len(text) and text[index] == '"':
            index += 1
            while index < len(text) and text[index] != '"':
                index += 2 if text[index] == "\\" else 1
            if index >= len(text):
                raise LineError(f"string field {shorten(key, 32)!r} has no closing quote")
            index += 1
            strings.append(key)
        else:
            start = index
            while index < len(text) and text[index] not in ", ":
                index += 1
            fields[key] = number(text[start:index])
        if index < len(text) and text[index] == ",":
            index += 1
            continue
        break
    rest = text[index:].split()
    if len(rest) > 1:
        raise LineError("expected `measurement[,tag=value...] field=value[,...] [timestamp]`")
    return Line(measurement, tags, fields, strings, timestamp_of(["", "", *rest]))
