"""The overview (`GET /`) as HTML: is everything still pushing (the stale sources first,
marked in words and not only in colour), each source's last hour, the Pushgateway-API
groups with their delete buttons, and the service's own state."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import quote

import orjson

from metrics_ingest.status.figures import GroupRow, ServiceState, SourceRow
from metrics_ingest.status.layout import (
    ago,
    counts,
    duration,
    esc,
    hour_label,
    nav_for,
    page,
    sign_in_form,
    size,
    when,
)


@dataclass(frozen=True)
class Viewer:
    """Who looks: the token's name and roles (None: nobody signed in), whether reads are
    public, and which groups' jobs the token may delete (admin role, within its scope)."""

    name: str | None
    roles: frozenset[str]
    reads_public: bool
    may_delete: Callable[[str], bool]


def source_href(name: str) -> str:
    return "/sources/" + quote(name, safe="")


def state_badge(row: SourceRow) -> str:
    if row.stale:
        return '<span class="badge stale">⚠ STALE</span>'
    return '<span class="badge ok">✓ ok</span>'


def last_push_cell(row: SourceRow, now: float) -> str:
    limit = f"stale after {duration(row.stale_after)}"
    if row.last_push is None:
        return f"never stored (only refused)<br><small>{limit}</small>"
    return f"{when(row.last_push)}<br><small>{ago(now - row.last_push)} · {limit}</small>"


def none(value: object) -> str:
    """The class of a cell with nothing to say (left out of a phone's card)."""
    return "" if value else ' class="none"'


def source_table(rows: Sequence[SourceRow], hour: str, now: float) -> str:
    head = ("<thead><tr><th>State</th><th>Source</th><th>Last push</th>"
            f'<th class="num">Series</th><th class="num">Samples, {hour}</th>'
            f"<th>Refused pushes, {hour}</th><th>Skipped samples, {hour}</th>"
            "<th>Formats</th></tr></thead>")
    lines = []
    for row in rows:
        formats = ", ".join(map(esc, row.formats)) or '<span class="muted">—</span>'
        lines.append(
            f'<tr class="{"stale" if row.stale else "ok"}" data-source="{esc(row.name)}">'
            f'<td class="state" data-label="State">{state_badge(row)}</td>'
            f'<td class="name" data-label="Source"><a href="{esc(source_href(row.name))}">'
            f"<b>{esc(row.name)}</b></a></td>"
            f'<td data-label="Last push">{last_push_cell(row, now)}</td>'
            f'<td data-label="Series" class="num">{row.series:,}</td>'
            f'<td data-label="Samples, {hour}" class="num">{row.samples:,}</td>'
            f'<td data-label="Refused pushes, {hour}"{none(row.rejected)}>'
            f"{counts(row.rejected)}</td>"
            f'<td data-label="Skipped samples, {hour}"{none(row.skipped)}>'
            f"{counts(row.skipped)}</td>"
            f'<td data-label="Formats"{none(row.formats)}>{formats}</td></tr>')
    return f'<table class="cards" id="source-table">{head}<tbody>{"".join(lines)}</tbody></table>'


def label_list(labels: dict[str, str]) -> str:
    if not labels:
        return '<span class="muted">none</span>'
    return " ".join(f"<code>{esc(name)}=&quot;{esc(value)}&quot;</code>"
                    for name, value in sorted(labels.items()))


def delete_button(group: GroupRow, viewer: Viewer) -> str:
    if not viewer.may_delete(group.job):
        why = ("needs a token with the admin role" if "admin" not in viewer.roles
               else "this token may not write this job")
        return (f'<button class="danger" type="button" disabled title="{esc(why)}">Delete'
                f"</button><br><small>{esc(why)}</small>")
    described = ", ".join([f"job={group.job}",
                           *(f"{name}={value}" for name, value in sorted(group.labels.items()))])
    question = f"Delete the group {described}? Its series leave /metrics at once."
    labels = orjson.dumps(group.labels, option=orjson.OPT_SORT_KEYS).decode()
    return (f'<form method="post" action="/groups/delete" data-confirm="{esc(question)}">'
            f'<input type="hidden" name="job" value="{esc(group.job)}">'
            f'<input type="hidden" name="labels" value="{esc(labels)}">'
            f'<button class="danger" type="submit" aria-label="Delete {esc(described)}">'
            "Delete</button></form>")


def group_table(groups: Sequence[GroupRow], viewer: Viewer, now: float) -> str:
    if not groups:
        return '<p class="muted">No Pushgateway-API groups (<code>/metrics/job/…</code>).</p>'
    head = ("<thead><tr><th>Job</th><th>Grouping labels</th><th>Last push "
            "(<code>push_time_seconds</code>)</th><th>Last failed push</th><th></th>"
            "</tr></thead>")
    lines = []
    for group in groups:
        pushed = (f"{when(group.pushed_at)}<br><small>{ago(now - group.pushed_at)}</small>"
                  if group.pushed_at else '<span class="muted">never</span>')
        failed = (f"{when(group.failed_at)}<br><small>{ago(now - group.failed_at)}</small>"
                  if group.failed_at else '<span class="muted">—</span>')
        lines.append(
            f'<tr data-job="{esc(group.job)}" data-grouping="{esc(group.key)}">'
            f'<td data-label="Job"><a href="{esc(source_href(group.job))}">'
            f"<b>{esc(group.job)}</b></a></td>"
            f'<td data-label="Grouping labels">{label_list(group.labels)}</td>'
            f'<td data-label="Last push">{pushed}</td>'
            f'<td data-label="Last failed push">{failed}</td>'
            f'<td data-label="">{delete_button(group, viewer)}</td></tr>')
    return f'<table class="cards" id="group-table">{head}<tbody>{"".join(lines)}</tbody></table>'


def service_list(service: ServiceState, hour: str, now: float) -> str:
    purge = (f"{when(service.last_purge)} ({ago(now - service.last_purge)})"
             if service.last_purge else "none since this server started")
    writer = ("ok" if service.writer_error is None
              else f'<b class="badge stale">⚠ failing</b> {esc(service.writer_error)}')
    workers = (f"{service.workers} (the figures above are this worker's)"
               if service.workers > 1 else "1")
    items = [
        ("Version", f"metrics-ingest {esc(service.version)}"),
        ("Storage", esc(service.engine)),
        ("Database size", size(service.db_size)),
        ("Queue", f"{service.queued:,} of {service.queue_max:,} samples waiting"),
        ("Writer", writer),
        ("Last purge", f"{purge}; next {when(service.next_purge)}"),
        ("Server started", f"{when(service.started)} ({ago(now - service.started)})"),
        ("Worker processes", workers),
        (f"Refused, no known source, {hour}", counts(service.unsourced_rejections)),
    ]
    return ('<dl class="state" id="service">'
            + "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in items) + "</dl>")


def summary(rows: Sequence[SourceRow]) -> str:
    stale = sum(row.stale for row in rows)
    if not rows:
        return ('<p class="summary good" id="summary">No source has pushed yet.</p>')
    if stale:
        return (f'<p class="summary bad" id="summary" role="status">⚠ {stale} of {len(rows)} '
                f"source{'s' if len(rows) != 1 else ''} stale</p>")
    return (f'<p class="summary good" id="summary" role="status">✓ All {len(rows)} '
            f"source{'s' if len(rows) != 1 else ''} pushing</p>")


def render_overview(rows: Sequence[SourceRow], groups: Sequence[GroupRow],
                    service: ServiceState, covers: float, viewer: Viewer, now: float,
                    problem: str | None = None) -> str:
    """The whole overview page. `covers`: the seconds the "last hour" figures span (since
    the start while the server is younger than an hour); `problem`: why the store could not
    be read."""
    hour = hour_label(covers)
    parts = [summary(rows)]
    if problem is not None:
        parts.append(f'<p class="summary bad" role="alert">⚠ {esc(problem)}</p>')
    parts += ["<h2>Sources</h2>", source_table(rows, hour, now) if rows else "",
              '<h2 id="groups">Pushgateway groups</h2>', group_table(groups, viewer, now),
              "<h2>Service</h2>", service_list(service, hour, now)]
    if viewer.name is None:
        parts.append('<h2 id="sign-in">Sign in</h2><p>Reads are public here; deleting a '
                     "group needs a token with the admin role.</p>" + sign_in_form("/"))
    stale = sum(row.stale for row in rows)
    title = f"metrics-ingest: {len(rows)} sources" + (f", {stale} stale" if stale else "")
    return page(title, nav_for(viewer.name, viewer.roles), "".join(parts))
