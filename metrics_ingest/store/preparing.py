"""A big push's series, found or created ahead of its commit, a slice at a time.

Creating 255,000 series inside the one transaction that stores a push held every other push
waiting for seconds (bench W11: 8 s). A push bigger than a batch is therefore prepared
first: each writer command resolves the next SLICE_SERIES of its series (cached, found, or
created, within the series budgets) in a short transaction of its own, and other batches
commit between the slices. The push's own transaction then writes only its samples, with
the ids prepared, all or nothing as ever.

A series created this way has no sample until that commit, so nothing shows it (/metrics,
queries and /api/sources read samples and latest values); if the push is then not stored
(refused, overloaded, a storage error), `unused` names the series to remove again, those
no other push has given a sample meanwhile.
"""

from __future__ import annotations

from metrics_ingest.model import Prepared, Push
from metrics_ingest.store.budgets import SeriesLimits
from metrics_ingest.store.series_cache import (
    OverBudgetPushes,
    SeriesCache,
    SeriesKey,
    SeriesTable,
    find_or_create,
)

SLICE_SERIES = 100  # ~1 ms of new job-level series: what a push arriving meanwhile waits


def prepare_slice(cache: SeriesCache, table: SeriesTable, push: Push,
                  limits: SeriesLimits | None, size: int | None = None
                  ) -> tuple[bool, list[int]]:
    """Resolve the push's next groups, about `size` series, inside the caller's transaction;
    returns True once every group is, and the ids of the series created (the caller adds
    them to `push.prepared.created` once its transaction has committed). A push whose series
    would exceed a budget gets `refused` and OverBudgetPushes is raised (nothing of this
    slice created). Starts over when the cache was cleared since the last slice (series may
    have been deleted); the ids are not cached (a one-off push would only push the regulars'
    series out)."""
    prepared = push.prepared
    if prepared is None or prepared.clears != cache.clears:
        fresh = Prepared(cache.clears)
        if prepared is not None:
            fresh.created = prepared.created  # still to remove if the push fails
        prepared = push.prepared = fresh
    groups = push.groups
    start = end = len(prepared.ids)
    taken = 0
    size = size or SLICE_SERIES
    while end < len(groups) and taken < size:
        taken += len(groups[end].names)
        end += 1
    found: list[list[int | None]] = []
    missing: dict[SeriesKey, None] = {}
    for group in groups[start:end]:
        ids = list(map(cache.peek((group.source, group.labels)).get, group.names))
        found.append(ids)
        missing.update(((name, group.source, group.labels), None)
                       for name, got in zip(group.names, ids, strict=True) if got is None)
    known: dict[SeriesKey, int] = {}
    created: dict[SeriesKey, int] = {}
    if missing:
        known, created = find_or_create(table, list(missing), lambda key: push, limits)
    for group, ids in zip(groups[start:end], found, strict=True):
        prepared.ids.append([got if got is not None else known[(name, group.source,
                                                                 group.labels)]
                             for name, got in zip(group.names, ids, strict=True)])
    return end == len(groups), list(created.values())


def unused(push: Push) -> list[int]:
    """The series created for a push that was not stored, to delete where no sample came
    (and forget the preparation)."""
    prepared, push.prepared = push.prepared, None
    return [] if prepared is None else prepared.created


__all__ = ["OverBudgetPushes", "prepare_slice", "unused"]
