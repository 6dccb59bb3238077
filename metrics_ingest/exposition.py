"""Pure rendering of the Prometheus text exposition format 0.0.4: stored series and self-metrics."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from operator import itemgetter

import orjson

from metrics_ingest.storage import FreshSeries
from metrics_ingest.telemetry import Telemetry

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
INTEGRAL_LIMIT = 2**53  # integral doubles below this print as integers, exactly


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """Integral values print without a decimal point (as the Worker did); others round-trip."""
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < INTEGRAL_LIMIT:
        return str(int(value))
    return repr(value)


def label_block(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{name}="{escape_label_value(value)}"' for name, value in pairs)
    return "{" + inner + "}" if inner else ""


def series_labels(source: str, labels: str) -> str:
    """`{source="...",name="value",...}` for a stored series; labels arrive as sorted-key JSON."""
    pairs = [("source", source)]
    if labels:
        pairs.extend(orjson.loads(labels).items())
    return label_block(pairs)


def render_stored(
    rows: Iterable[FreshSeries],
    with_timestamps: bool,
    label_blocks: dict[tuple[str, str], str] | None = None,
) -> list[str]:
    """Lines for stored series. Rows must be sorted by metric name so families come out whole.

    `label_blocks` memoises the rendered `{source="...",...}` of each (source, labels) and may
    be kept between calls: many metrics share a label set, and label sets rarely change.
    """
    lines: list[str] = []
    blocks = {} if label_blocks is None else label_blocks
    for name, group in itertools.groupby(rows, key=itemgetter(0)):
        members = list(group)
        sources = sorted({row[1] for row in members})
        lines.append(f"# HELP {name} {escape_help('Metric from ' + ', '.join(sources))}")
        lines.append(f"# TYPE {name} gauge")
        for _, source, labels, value, timestamp in members:
            block = blocks.get((source, labels))
            if block is None:
                block = blocks[(source, labels)] = series_labels(source, labels)
            if value.is_integer() and -INTEGRAL_LIMIT < value < INTEGRAL_LIMIT:
                text = str(int(value))
            else:
                text = format_value(value)
            if with_timestamps:
                lines.append(f"{name}{block} {text} {timestamp * 1000}")
            else:
                lines.append(f"{name}{block} {text}")
    return lines


def family(name: str, kind: str, help_text: str) -> list[str]:
    return [f"# HELP {name} {escape_help(help_text)}", f"# TYPE {name} {kind}"]


def render_telemetry(telemetry: Telemetry, queue_samples: int, db_size: int) -> list[str]:
    """Lines for the `metrics_ingest_*` families, in a stable order."""
    lines: list[str] = []
    name = "metrics_ingest_samples_received_total"
    lines += family(name, "counter", "Samples committed to the database, by source.")
    for source, count in sorted(telemetry.samples_received.items()):
        lines.append(f"{name}{label_block([('source', source)])} {count}")

    name = "metrics_ingest_requests_total"
    lines += family(name, "counter", "HTTP requests answered, by route and status code.")
    for (route, code), count in sorted(telemetry.requests.items()):
        lines.append(f"{name}{label_block([('route', route), ('code', code)])} {count}")

    name = "metrics_ingest_rejected_pushes_total"
    lines += family(name, "counter", "Pushes refused, by reason and (when known) source.")
    for pairs, count in sorted(telemetry.rejected_pushes.items()):
        lines.append(f"{name}{label_block(pairs)} {count}")

    name = "metrics_ingest_queue_samples"
    lines += family(name, "gauge", "Samples waiting for the writer.")
    lines.append(f"{name} {queue_samples}")

    for name, help_text, histogram in (
        ("metrics_ingest_batch_samples", "Samples per committed transaction.",
         telemetry.batch_samples),
        ("metrics_ingest_flush_duration_seconds", "Time to commit one batch.",
         telemetry.flush_duration),
    ):
        lines += family(name, "histogram", help_text)
        for bound, count in histogram.cumulative():
            lines.append(f"{name}_bucket{label_block([('le', bound)])} {count}")
        lines.append(f"{name}_sum {format_value(histogram.total)}")
        lines.append(f"{name}_count {histogram.count}")

    name = "metrics_ingest_db_size_bytes"
    lines += family(name, "gauge", "Size of the database file and its WAL.")
    lines.append(f"{name} {db_size}")

    name = "metrics_ingest_purged_samples_total"
    lines += family(name, "counter", "Samples deleted by the retention purge.")
    lines.append(f"{name} {telemetry.purged_samples}")

    name = "metrics_ingest_last_purge_timestamp_seconds"
    lines += family(name, "gauge", "Unix time the last retention purge finished.")
    if telemetry.last_purge is not None:
        lines.append(f"{name} {format_value(telemetry.last_purge)}")

    name = "metrics_ingest_last_push_timestamp_seconds"
    lines += family(name, "gauge", "Unix time of the last accepted push, by source.")
    for source, seconds in sorted(telemetry.last_push.items()):
        lines.append(f"{name}{label_block([('source', source)])} {format_value(seconds)}")
    return lines


@dataclass
class StoredBody:
    """The rendered stored-series part of the last scrape, reused while it is still exact.

    It stays exact until the writer commits anything (`generation` moves) or the oldest series
    in it ages out of the export window (`expires`). Prometheus usually scrapes more often than
    HPC pushers push, so most scrapes re-use it; the self-metrics are always rendered fresh.
    """

    generation: int = -1
    expires: float = 0.0
    text: str = ""
    label_blocks: dict[tuple[str, str], str] = field(default_factory=dict)


def render_exposition(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode()
