"""A parser for the Prometheus text format 0.0.4, as the Pushgateway reads pushes.

Not prometheus_client's: that one renames the samples of a counter family not ending in
`_total` (the Pushgateway keeps `foo` as `foo`), and it costs 8.8 ms per 1,000 lines where
this one costs ~1.5 ms (bench/README.md). Samples are assigned to families as both do: a
sample belongs to the family of the last TYPE/HELP line when its name is one that family's
type allows (`_bucket`, `_count`, `_sum` ...); otherwise it is a family of its own.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LINE_RE = re.compile(rf"({NAME})[ \t]*(?:\{{(.*)\}})?[ \t]+(\S+)(?:[ \t]+(\S+))?[ \t]*")
LABEL_RE = re.compile(r'[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"((?:[^"\\]|\\.)*)"[ \t]*(,|$)')
META_RE = re.compile(rf"#[ \t]+(HELP|TYPE)[ \t]+({NAME})(?:[ \t]+(.*))?")
NUMBER_RE = re.compile(r"[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)")
SPECIAL_VALUES = {"+Inf": math.inf, "Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}
ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}
# A gauge histogram is read as the Pushgateway's parser reads one in this format: with the
# histogram's sample names, and exported as a histogram.
SUFFIXES = {"summary": ("_count", "_sum", ""), "histogram": ("_count", "_sum", "_bucket")}
TYPES = {"counter": "counter", "gauge": "gauge", "histogram": "histogram", "summary": "summary",
         "untyped": "untyped", "gaugehistogram": "histogram", "gauge_histogram": "histogram"}


class TextFormatError(ValueError):
    """The body is not the text format; the message names the line."""


@dataclass
class Family:
    name: str
    type: str = "untyped"
    help: str = ""
    typed: bool = False  # a TYPE line was read (a second one is an error, as in Go's parser)
    samples: list[tuple[str, dict[str, str], float, bool]] = field(default_factory=list)
    # (sample name, labels, value, carried a timestamp)


def unescape(text: str) -> str:
    if "\\" not in text:
        return text
    return re.sub(r'\\[\\"n]', lambda match: ESCAPES[match.group(0)], text)


def unescape_help(text: str) -> str:
    """HELP escapes only backslash and newline; any other backslash stays as it is."""
    if "\\" not in text:
        return text
    return re.sub(r"\\[\\n]", lambda match: ESCAPES[match.group(0)], text)


def labels_of(block: str, number: int) -> dict[str, str]:
    labels: dict[str, str] = {}
    position = 0
    block = block.strip()
    while position < len(block):
        match = LABEL_RE.match(block, position)
        if match is None:
            raise TextFormatError(f"line {number}: malformed labels")
        labels[match.group(1)] = unescape(match.group(2))
        position = match.end()
    return labels


def value_of(text: str, number: int) -> float:
    special = SPECIAL_VALUES.get(text)
    if special is not None:
        return special
    if not NUMBER_RE.fullmatch(text):
        raise TextFormatError(f"line {number}: {text[:32]!r} is not a number")
    return float(text)


class TooManySamples(TextFormatError):
    """More samples than the caller takes (it stopped reading)."""

    def __init__(self, count: int) -> None:
        super().__init__(f"more than {count - 1} samples")
        self.count = count


def parse(body: str, max_samples: int | None = None) -> list[Family]:
    """Families in order of appearance; raises TextFormatError naming the line, or
    TooManySamples once more than `max_samples` samples are read."""
    samples = 0
    families: list[Family] = []
    current: Family | None = None
    allowed: tuple[str, ...] = ()
    for number, raw in enumerate(body.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            meta = META_RE.fullmatch(line)
            if meta is None:
                continue  # a comment
            kind, name, rest = meta.groups()
            if current is None or current.name != name:
                current = Family(name)
                families.append(current)
                allowed = (name,)
            if kind == "TYPE":
                if current.typed or current.samples:
                    raise TextFormatError(f"line {number}: second TYPE line for {name[:64]}, "
                                          "or TYPE after its samples")
                current.typed = True
                declared = (rest or "").strip().lower()
                family_type = TYPES.get(declared)
                if family_type is None:
                    raise TextFormatError(f"line {number}: unknown metric type "
                                          f"{declared[:32]!r} (the text format has counter, "
                                          "gauge, histogram, summary and untyped)")
                current.type = family_type
                allowed = tuple(name + suffix for suffix in SUFFIXES.get(family_type, ("",)))
            else:
                current.help = unescape_help((rest or "").strip())
            continue
        match = LINE_RE.fullmatch(line)
        if match is None:
            raise TextFormatError(f"line {number}: not `name{{labels}} value [timestamp]`")
        name, block, raw_value, raw_timestamp = match.groups()
        if raw_timestamp is not None and not re.fullmatch(r"-?\d+", raw_timestamp):
            raise TextFormatError(f"line {number}: {raw_timestamp[:32]!r} is not a timestamp")
        samples += 1
        if max_samples is not None and samples > max_samples:
            raise TooManySamples(samples)
        sample = (name, labels_of(block, number) if block else {}, value_of(raw_value, number),
                  raw_timestamp is not None)
        if current is None or name not in allowed:
            families.append(Family(name, samples=[sample]))
            current, allowed = None, ()
        else:
            current.samples.append(sample)
    return families
