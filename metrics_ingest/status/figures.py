"""What the status page shows, gathered into plain values: a row per source, the
Pushgateway-API groups, the service's own state; and one source's families with their
newest values and the series to draw. Pure functions of what the store and the counters
said, so they are tested without a server."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import orjson

from metrics_ingest.families import STRUCTURED, family_of
from metrics_ingest.model import FamilyMeta
from metrics_ingest.status.activity import Activity, HourFigures
from metrics_ingest.store import GroupTimes, SeriesSamples, SourceSeries

SHOWN_SERIES = 6  # newest values listed per family
PLOTTED_SERIES = 4  # series drawn per family's sparkline
PLOTTED_TOTAL = 200  # series drawn on one page: a bound on the samples read


@dataclass(frozen=True)
class SourceRow:
    """One source on the overview. `last_push`: the newest of this server's receipt time
    and the stored newest sample (other workers' or replicas' pushes, pushes before a
    restart); None when nothing of it was committed (only refused)."""

    name: str
    last_push: float | None
    stale_after: float
    stale: bool
    series: int
    samples: int  # committed in the last hour, by this server
    rejected: dict[str, int]  # reason -> pushes refused in the last hour
    skipped: dict[str, int]  # reason -> samples skipped in the last hour
    formats: tuple[str, ...]


@dataclass(frozen=True)
class GroupRow:
    job: str
    labels: dict[str, str]
    key: str  # the stored grouping: canonical JSON of the labels, "" for none
    pushed_at: float  # push_time_seconds (0: never pushed successfully)
    failed_at: float  # push_failure_time_seconds (0: never failed)


def labels_of(key: str) -> dict[str, str]:
    loaded = orjson.loads(key) if key else {}
    return {str(name): str(value) for name, value in loaded.items()}


def source_rows(stored: Mapping[str, int], series: Mapping[str, int],
                last_push: Mapping[str, float], hour: HourFigures,
                formats: Mapping[str, tuple[str, ...]], activity: Activity,
                fixed_stale: int | None, now: float) -> list[SourceRow]:
    """Every source known to the store, or to this server's counters (a source whose every
    push was refused has no stored sample): the stale ones first, then by name."""
    rejected, _ = hour.rejected_by_source()
    skipped = hour.skipped_by_source()
    names = {*stored, *last_push, *rejected}
    rows = []
    for name in names:
        received = last_push.get(name)
        newest = stored.get(name)
        last = max(received or 0.0, float(newest or 0)) if (received or newest) else None
        stale_after = activity.stale_after(name, fixed_stale)
        rows.append(SourceRow(
            name, last, stale_after, last is None or now - last > stale_after,
            series.get(name, 0), hour.samples.get(name, 0), rejected.get(name, {}),
            skipped.get(name, {}), formats.get(name, ())))
    rows.sort(key=lambda row: (not row.stale, row.name))
    return rows


def formats_by_source(pushed_with: Mapping[object, Mapping[str, float]],
                      names: Mapping[object, str]) -> dict[str, tuple[str, ...]]:
    """source -> the names of the formats it pushed with, in `names`' order."""
    order = {fmt: number for number, fmt in enumerate(names)}
    found: dict[str, list[object]] = {}
    for fmt, sources in pushed_with.items():
        for source in sources:
            found.setdefault(source, []).append(fmt)
    return {source: tuple(names.get(fmt, "other")
                          for fmt in sorted(fmts, key=lambda f: order.get(f, len(order))))
            for source, fmts in found.items()}


def group_rows(groups: Sequence[GroupTimes]) -> list[GroupRow]:
    rows = [GroupRow(group.source, labels_of(group.grouping), group.grouping,
                     group.pushed_at, group.failed_at) for group in groups]
    rows.sort(key=lambda row: (row.job, row.key))
    return rows


@dataclass(frozen=True)
class ServiceState:
    version: str
    engine: str
    db_size: int
    queued: int
    queue_max: int
    writer_error: str | None
    last_purge: float  # 0: none since this server started
    next_purge: float
    started: float
    workers: int
    unsourced_rejections: dict[str, int]  # reason -> pushes refused of no known source


# -- one source ---------------------------------------------------------------------------


@dataclass
class FamilyView:
    """A family of one source: its series' newest values (`shown`, the first SHOWN_SERIES;
    a histogram's or summary's _count and _sum), and the series its sparkline draws."""

    name: str
    type: str
    help: str
    series: int = 0
    shown: list[SourceSeries] = field(default_factory=list)
    plotted: list[int] = field(default_factory=list)  # series ids
    lines: list[SeriesSamples] = field(default_factory=list)  # filled once read


def plan_families(rows: Sequence[SourceSeries],
                  declared: Mapping[str, FamilyMeta]) -> list[FamilyView]:
    """The source's series as families, in name order, with what each shows and draws (at
    most PLOTTED_TOTAL series drawn on the page)."""
    families: dict[str, FamilyView] = {}
    for row in rows:
        name = family_of(row.metric_name, declared)
        view = families.get(name)
        if view is None:
            meta = declared.get(name)
            view = families[name] = FamilyView(name, meta.type if meta else "gauge",
                                               meta.help if meta else "")
        view.series += 1
        structured = view.type in STRUCTURED
        if structured and not row.metric_name.endswith(("_count", "_sum")):
            continue  # buckets and quantiles are counted, not listed
        if len(view.shown) < SHOWN_SERIES:
            view.shown.append(row)
    budget = PLOTTED_TOTAL
    for view in sorted(families.values(), key=lambda v: v.name):
        drawn = [row for row in view.shown
                 if view.type not in STRUCTURED or row.metric_name.endswith("_count")]
        view.plotted = [row.id for row in drawn[:min(PLOTTED_SERIES, budget)]]
        budget -= len(view.plotted)
    return sorted(families.values(), key=lambda v: v.name)


def attach_samples(families: Sequence[FamilyView],
                   samples: Mapping[int, SeriesSamples]) -> None:
    for view in families:
        view.lines = [samples[series_id] for series_id in view.plotted if series_id in samples]
