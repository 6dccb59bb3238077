"""The service's own metrics (`metrics_ingest_*`): counters, gauges and histograms it updates."""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from metrics_ingest.model import Push

LabelPairs = tuple[tuple[str, str], ...]

BATCH_BUCKETS = (1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0)
FLUSH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


@dataclass
class Histogram:
    """A Prometheus histogram without labels: cumulative buckets are computed when rendered."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, count) pairs including +Inf, as the exposition needs them."""
        pairs = []
        running = 0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            running += count
            pairs.append((format_bound(bound), running))
        pairs.append(("+Inf", self.count))
        return pairs


def format_bound(bound: float) -> str:
    return repr(bound) if not bound.is_integer() else f"{bound:.1f}"


@dataclass
class Telemetry:
    """Every self-metric the service keeps in memory; one instance per app."""

    samples_received: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    requests: defaultdict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    token_requests: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    rejected_pushes: defaultdict[LabelPairs, int] = field(
        default_factory=lambda: defaultdict(int))
    last_push: dict[str, float] = field(default_factory=dict)
    batch_samples: Histogram = field(default_factory=lambda: Histogram(BATCH_BUCKETS))
    flush_duration: Histogram = field(default_factory=lambda: Histogram(FLUSH_BUCKETS))
    # (reason, source) -> metrics of accepted pushes that were not stored
    skipped_samples: defaultdict[tuple[str, str], int] = field(
        default_factory=lambda: defaultdict(int))
    purged_samples: int = 0
    last_purge: float = 0.0  # 0 until the first purge
    # For the status page, not exported: push format (the intake's PushFormat object) ->
    # source -> receipt time of its last committed push in that format.
    pushed_with: defaultdict[object, dict[str, float]] = field(
        default_factory=lambda: defaultdict(dict))

    def count_request(self, route: str, code: int) -> None:
        self.requests[(route, str(code))] += 1

    def count_rejected(self, reason: str, source: str | None = None) -> None:
        labels: LabelPairs = (("reason", reason),)
        if source is not None:
            labels += (("source", source),)
        self.rejected_pushes[labels] += 1

    def count_committed(self, source_counts: dict[str, int]) -> None:
        for source, count in source_counts.items():
            self.samples_received[source] += count

    def record_batch(self, pushes: Iterable[Push], seconds: float) -> None:
        """Count a committed batch: samples per source (refused pushes left out), its size
        and how long its commit took."""
        per_source: dict[str, int] = {}
        total = 0
        for push in pushes:
            if push.refused is not None:
                continue
            for group in push.groups:
                per_source[group.source] = per_source.get(group.source, 0) + len(group.names)
            total += push.samples
        self.count_committed(per_source)
        self.batch_samples.observe(total)
        self.flush_duration.observe(seconds)
