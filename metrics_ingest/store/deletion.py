"""Deleting series by selector (`delete_series`, `metrics-ingest delete`), for both engines:
each engine supplies its statements (`DeletionStatements`) and runs each step in a write
transaction of its own, so pushes commit between the steps.

1. `matching_series`: the ids of the series the selector picks (narrowed in SQL by the
   name and source when the selector fixes them, matched here otherwise).
2. `delete_window`: their samples in one slice of time; called slice by slice, so no single
   transaction scans more than a slice of the samples key.
3. `settle`: the series' staleness markers in the window go; a series whose newest sample
   went gets the newest one left as its latest;
   series left without samples are forgotten (with their group memberships, and groups
   left empty), and the sources' newest times are counted again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from metrics_ingest.selectors import Selector
from metrics_ingest.store.groups import Runner

WINDOW_SECONDS = 6 * 3600  # the time slice one deletion transaction covers


class DeletionStatements(NamedTuple):
    """One engine's SQL; `ids(list)` makes the parameter an id list is passed as."""

    ids: Callable[[list[int]], Any]
    select_series: str  # (name or None, name or None, source or None, source or None)
    delete_samples: str  # (start, end, ids)
    delete_markers: str  # (start, end, ids): their staleness markers
    latest_within: str  # (ids, start, end) -> series_id of latest rows inside the window
    newest_left: str  # (ids,) -> (series_id, timestamp, value) of each one's newest sample
    update_latest: str  # (timestamp, value, series_id)
    forget_members: str  # (ids,)
    forget_latest: str  # (ids,)
    forget_series: str  # (ids,) -> sources of the series forgotten (RETURNING source)
    forget_empty_groups: str  # ()
    forget_source: str  # (source,)
    recount_source: str  # (source,)
    bounds: str  # () -> (oldest, newest) sample timestamps


def matching_series(db: Runner, sql: DeletionStatements, selector: Selector) -> list[int]:
    name = selector.equal("__name__")
    source = selector.equal("source")
    rows = db.execute(sql.select_series, (name, name, source, source)).fetchall()
    return [series_id for series_id, metric_name, series_source, labels in rows
            if selector.matches(metric_name, series_source, labels)]


def windows(db: Runner, sql: DeletionStatements, start: int, end: int
            ) -> list[tuple[int, int]]:
    """The time slices covering [start, end] where samples exist, oldest first."""
    oldest, newest = db.execute(sql.bounds).fetchone()
    if oldest is None:
        return []
    first, last = max(start, int(oldest)), min(end, int(newest))
    return [(at, min(at + WINDOW_SECONDS - 1, last))
            for at in range(first, last + 1, WINDOW_SECONDS)]


def delete_window(db: Runner, sql: DeletionStatements, ids: list[int], start: int,
                  end: int) -> int:
    """Delete the series' samples in [start, end]; returns how many."""
    return int(db.execute(sql.delete_samples, (start, end, sql.ids(ids))).rowcount)


def settle(db: Runner, sql: DeletionStatements, ids: list[int], start: int, end: int
           ) -> tuple[list[int], int]:
    """After the windows: the staleness markers in [start, end] go, and the latest rows the
    deletion took are fixed; returns (the series whose latest row changed or went, the number
    of series forgotten)."""
    db.execute(sql.delete_markers, (start, end, sql.ids(ids)))
    hit = [row[0] for row in db.execute(sql.latest_within, (sql.ids(ids), start, end))]
    if not hit:
        return [], 0
    newest = {series_id: (timestamp, value) for series_id, timestamp, value
              in db.execute(sql.newest_left, (sql.ids(hit),))}
    db.executemany(sql.update_latest, [(timestamp, value, series_id)
                                       for series_id, (timestamp, value) in newest.items()])
    empty = [series_id for series_id in hit if series_id not in newest]
    if not empty:
        return hit, 0
    db.execute(sql.forget_members, (sql.ids(empty),))
    db.execute(sql.forget_latest, (sql.ids(empty),))
    sources = {row[0] for row in db.execute(sql.forget_series, (sql.ids(empty),)).fetchall()}
    db.execute(sql.forget_empty_groups)
    for source in sorted(sources):
        db.execute(sql.forget_source, (source,))
        db.execute(sql.recount_source, (source,))
    return hit, len(empty)


def unique(ids: Sequence[int]) -> list[int]:
    return sorted(set(ids))
