"""Series budgets: a push that would create series beyond a source's budget or the
database's is refused whole; samples for series that exist keep flowing.

Counted: the series stored (`source_series`, kept by triggers on `series`), so a series
counts until the purge forgets it once its samples have aged out; the budget frees then.
The count is read inside the write transaction only when a batch creates series, so the
usual batch (every series known) pays nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import NamedTuple, Protocol

from metrics_ingest.model import OverBudget, Push


class SeriesLimits(NamedTuple):
    per_source: int  # METRICS_MAX_SERIES_PER_SOURCE
    total: int  # METRICS_MAX_SERIES


class SeriesCounts(Protocol):
    def series_counts(self, sources: Sequence[str]) -> tuple[dict[str, int], int]: ...


def refuse_over_budget(limits: SeriesLimits, new: Sequence[tuple[Push, str]],
                       counts: SeriesCounts) -> bool:
    """`new`: each series the batch would create, as (the push creating it, its source).
    Pushes are admitted in batch order; one that does not fit gets `refused`. True if any
    push was refused."""
    tallies: dict[Push, Counter[str]] = {}
    for push, source in new:
        tallies.setdefault(push, Counter())[source] += 1
    stored, total = counts.series_counts(sorted({source for _, source in new}))
    refused = False
    for push, tally in tallies.items():
        why = over_limits(limits, tally, stored, total)
        if why is not None:
            push.refused = OverBudget(why)
            refused = True
            continue
        for source, count in tally.items():
            stored[source] = stored.get(source, 0) + count
        total += sum(tally.values())
    return refused


def over_limits(limits: SeriesLimits, tally: Counter[str], stored: dict[str, int],
                total: int) -> str | None:
    for source, count in sorted(tally.items()):
        held = stored.get(source, 0)
        if held + count > limits.per_source:
            return (f"source {source!r} holds {held} series and this push would create "
                    f"{count} more, beyond its budget of {limits.per_source} "
                    "(METRICS_MAX_SERIES_PER_SOURCE); nothing of the push was stored")
    added = sum(tally.values())
    if total + added > limits.total:
        return (f"the database holds {total} series and this push would create {added} "
                f"more, beyond the budget of {limits.total} (METRICS_MAX_SERIES); nothing "
                "of the push was stored")
    return None
