"""One source's page (`GET /sources/<name>`) as HTML: its state as on the overview, then
its families, each with its series' newest values and a sparkline of the last hour."""

from __future__ import annotations

from collections.abc import Sequence

from metrics_ingest.status.figures import FamilyView, SourceRow, labels_of
from metrics_ingest.status.layout import (
    ago,
    counts,
    duration,
    esc,
    hour_label,
    nav_for,
    number,
    page,
    when,
)
from metrics_ingest.status.overview_page import Viewer, state_badge
from metrics_ingest.status.sparkline import sparkline, value_range
from metrics_ingest.store import SourceSeries


def series_item(row: SourceSeries, family: str, now: float) -> str:
    labels = labels_of(row.labels)
    member = row.metric_name[len(family):] if row.metric_name != family else ""
    shown = ",".join(f'{name}="{value}"' for name, value in sorted(labels.items()))
    head = f"{member}{{{shown}}}" if shown else member
    key = f"<code>{esc(head)}</code> " if head else ""
    return (f"<li>{key}<b>{esc(number(row.value))}</b> "
            f"<small>{ago(now - row.timestamp)}</small></li>")


def spark_cell(view: FamilyView, start: int, end: int, failed: str | None) -> str:
    if failed is not None:
        return f'<span class="muted">{esc(failed)}</span>'
    if not view.plotted:
        return '<span class="muted">—</span>'
    bounds = value_range(view.lines)
    if bounds is None:
        return '<span class="muted">no samples in the last hour</span>'
    low, high = bounds
    drawn = len(view.lines)
    what = view.name if drawn == 1 else f"{view.name}, {drawn} series"
    if view.type in ("histogram", "summary"):
        what = f"{view.name}_count" + (f", {drawn} series" if drawn > 1 else "")
    label = f"{what}, last hour: from {number(low)} to {number(high)}"
    return (sparkline(view.lines, start, end, label)
            + f"<br><small>min {esc(number(low))} · max {esc(number(high))}</small>")


def family_table(families: Sequence[FamilyView], start: int, end: int, now: float,
                 failed: str | None) -> str:
    head = ("<thead><tr><th>Family</th><th>Newest values</th><th>Last hour</th></tr>"
            "</thead>")
    lines = []
    for view in families:
        items = "".join(series_item(row, view.name, now) for row in view.shown)
        more = view.series - len(view.shown)
        if more > 0:
            items += f'<li class="muted">… {more:,} more series</li>'
        help_text = f"<br><small>{esc(view.help)}</small>" if view.help else ""
        lines.append(
            f'<tr data-family="{esc(view.name)}">'
            f'<td data-label="Family"><code><b>{esc(view.name)}</b></code> '
            f'<span class="badge">{esc(view.type)}</span>{help_text}</td>'
            f'<td data-label="Newest values"><ul class="plain">{items}</ul></td>'
            f'<td data-label="Last hour">{spark_cell(view, start, end, failed)}</td></tr>')
    return f'<table class="cards" id="family-table">{head}<tbody>{"".join(lines)}</tbody></table>'


def render_source(name: str, row: SourceRow, families: Sequence[FamilyView], listed: int,
                  limit: int, start: int, end: int, covers: float, viewer: Viewer,
                  now: float, failed: str | None = None) -> str:
    """`listed`: the series read (at most `limit`); `covers`: the seconds the "last hour"
    counts span; `failed`: why no sparkline is drawn."""
    hour = hour_label(covers)
    parts = ['<p><a href="/">← All sources</a></p>',
             f"<h2>{state_badge(row)} Source <code>{esc(name)}</code></h2>"]
    last = ("never stored (only refused)" if row.last_push is None
            else f"{when(row.last_push)} ({ago(now - row.last_push)})")
    facts = [
        ("Last push", f"{last}; stale after {duration(row.stale_after)}"),
        ("Series stored", f"{row.series:,}"),
        (f"Samples, {hour}", f"{row.samples:,}"),
        (f"Refused pushes, {hour}", counts(row.rejected)),
        (f"Skipped samples, {hour}", counts(row.skipped)),
        ("Formats", ", ".join(map(esc, row.formats)) or "—"),
    ]
    parts.append('<dl class="state">' + "".join(f"<dt>{key}</dt><dd>{value}</dd>"
                                                 for key, value in facts) + "</dl>")
    parts.append("<h2>Families</h2>")
    if not families:
        parts.append('<p class="muted">No exported series stored for this source.</p>')
    else:
        if listed >= limit:
            parts.append(f'<p class="notice">Showing the families of the first {limit:,} '
                         "series (by name) only.</p>")
        parts.append(family_table(families, start, end, now, failed))
    title = f"metrics-ingest: {name}" + (" (stale)" if row.stale else "")
    return page(title, nav_for(viewer.name, viewer.roles), "".join(parts))
