"""The exposition formats (Prometheus text 0.0.4, OpenMetrics 1.0.0): what differs between
them, content negotiation, escaping and values, and the service's own metrics."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import orjson

from metrics_ingest.telemetry import Telemetry

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
INTEGRAL_LIMIT = 2**53  # integral doubles below this print as integers, exactly


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


@dataclass(frozen=True)
class Format:
    """What differs between Prometheus text 0.0.4 and OpenMetrics 1.0.0 in our output."""

    content_type: str
    openmetrics: bool

    def help(self, name: str, text: str) -> str:
        escaped = escape_help(text)
        if self.openmetrics:
            escaped = escaped.replace('"', '\\"')
        return f"# HELP {name} {escaped}"

    def type(self, name: str, kind: str) -> str:
        # OpenMetrics names a counter family without the _total its samples carry.
        if self.openmetrics and kind == "counter":
            name = name.removesuffix("_total")
        return f"# TYPE {name} {kind}"

    def stamp(self, seconds: int) -> str:
        return str(seconds) if self.openmetrics else str(seconds * 1000)

    @property
    def trailer(self) -> str:
        return "# EOF\n" if self.openmetrics else ""


TEXT = Format(CONTENT_TYPE, openmetrics=False)
OPENMETRICS = Format(OPENMETRICS_CONTENT_TYPE, openmetrics=True)


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


def series_block(source: str, labels: str) -> str:
    """`{source="...",name="value",...}` for a stored series; labels arrive as sorted-key JSON.
    (sql/0005 computes the same text in SQL for series stored before it.)"""
    pairs = [("source", source)]
    if labels:
        pairs.extend(orjson.loads(labels).items())
    return label_block(pairs)


def family(name: str, kind: str, help_text: str, fmt: Format = TEXT) -> list[str]:
    return [fmt.help(name.removesuffix("_total") if fmt.openmetrics and kind == "counter"
                     else name, help_text), fmt.type(name, kind)]


def render_telemetry(telemetry: Telemetry, queue_samples: int, db_size: int,
                     fmt: Format = TEXT, series: dict[str, int] | None = None) -> list[str]:
    """Lines for the `metrics_ingest_*` families, in a stable order."""
    lines: list[str] = []
    name = "metrics_ingest_samples_received_total"
    lines += family(name, "counter", "Samples committed to the database, by source.", fmt)
    for source, count in sorted(telemetry.samples_received.items()):
        lines.append(f"{name}{label_block([('source', source)])} {count}")

    name = "metrics_ingest_requests_total"
    lines += family(name, "counter", "HTTP requests answered, by route and status code.", fmt)
    for (route, code), count in sorted(telemetry.requests.items()):
        lines.append(f"{name}{label_block([('route', route), ('code', code)])} {count}")

    name = "metrics_ingest_token_requests_total"
    lines += family(name, "counter", "Requests whose token passed, by the token's name.", fmt)
    for token, count in sorted(telemetry.token_requests.items()):
        lines.append(f"{name}{label_block([('token', token)])} {count}")

    name = "metrics_ingest_rejected_pushes_total"
    lines += family(name, "counter", "Pushes refused, by reason and (when known) source.", fmt)
    for pairs, count in sorted(telemetry.rejected_pushes.items()):
        lines.append(f"{name}{label_block(pairs)} {count}")

    name = "metrics_ingest_skipped_samples_total"
    lines += family(name, "counter",
                    "Metrics of accepted pushes that were not stored, by reason and source.", fmt)
    for (reason, source), count in sorted(telemetry.skipped_samples.items()):
        lines.append(f"{name}{label_block([('reason', reason), ('source', source)])} {count}")

    name = "metrics_ingest_queue_samples"
    lines += family(name, "gauge", "Samples waiting for the writer.", fmt)
    lines.append(f"{name} {queue_samples}")

    for name, help_text, histogram in (
        ("metrics_ingest_batch_samples", "Samples per committed transaction.",
         telemetry.batch_samples),
        ("metrics_ingest_flush_duration_seconds", "Time to commit one batch.",
         telemetry.flush_duration),
    ):
        lines += family(name, "histogram", help_text, fmt)
        for bound, count in histogram.cumulative():
            lines.append(f"{name}_bucket{label_block([('le', bound)])} {count}")
        lines.append(f"{name}_sum {format_value(histogram.total)}")
        lines.append(f"{name}_count {histogram.count}")

    name = "metrics_ingest_db_size_bytes"
    lines += family(name, "gauge", "Size of the database file and its WAL.", fmt)
    lines.append(f"{name} {db_size}")

    name = "metrics_ingest_series"
    lines += family(name, "gauge", "Series stored, by source (what the series budgets count).",
                    fmt)
    for source, count in sorted((series or {}).items()):
        lines.append(f"{name}{label_block([('source', source)])} {count}")

    name = "metrics_ingest_purged_samples_total"
    lines += family(name, "counter", "Samples deleted by the retention purge.", fmt)
    lines.append(f"{name} {telemetry.purged_samples}")

    name = "metrics_ingest_last_purge_timestamp_seconds"
    lines += family(name, "gauge", "Unix time the last retention purge finished.", fmt)
    lines.append(f"{name} {format_value(telemetry.last_purge)}")

    name = "metrics_ingest_last_push_timestamp_seconds"
    lines += family(name, "gauge", "Unix time of the last accepted push, by source.", fmt)
    for source, seconds in sorted(telemetry.last_push.items()):
        lines.append(f"{name}{label_block([('source', source)])} {format_value(seconds)}")
    return lines


def render_exposition(lines: list[str], fmt: Format = TEXT) -> bytes:
    return ("\n".join(lines) + "\n" + fmt.trailer).encode()


def negotiate(accept: str) -> Format:
    """OpenMetrics 1.0.0 when the Accept header prefers it (as Prometheus' does), else text.

    The highest `q` wins; among equals, the one listed first.
    """
    best, best_q = TEXT, -1.0
    for entry in accept.split(","):
        media, *params = (part.strip() for part in entry.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        kind = media.lower()
        if q > best_q and kind in ("application/openmetrics-text", "text/plain", "*/*", "text/*"):
            best = OPENMETRICS if kind == "application/openmetrics-text" else TEXT
            best_q = q
    return best


def accepts_text(accept: str) -> bool:
    """Whether the Accept header takes text 0.0.4 at all (q > 0)."""
    for entry in accept.split(","):
        media, *params = (part.strip() for part in entry.split(";"))
        if media.lower() in ("text/plain", "*/*", "text/*"):
            q = next((value for key, _, value in (p.partition("=") for p in params)
                      if key.strip().lower() == "q"), "1")
            try:
                if float(q) > 0:
                    return True
            except ValueError:
                continue
    return not accept.strip()
