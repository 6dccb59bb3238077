"""What both engines' write sessions do to a batch before writing it: the family check, the
newest sample per source, and the family table read."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from metrics_ingest.families import FamilyRegistry
from metrics_ingest.model import FamilyMeta, Push

SELECT_FAMILIES = "SELECT name, type, help FROM families"


def load_registry(rows: Iterable[Any]) -> FamilyRegistry:
    """The registry from `SELECT_FAMILIES` rows."""
    return FamilyRegistry({name: FamilyMeta(kind, help_text) for name, kind, help_text in rows})


def checked(pushes: Sequence[Push], registry: FamilyRegistry) -> Sequence[Push]:
    """The pushes whose family types agree with the registry; the others get `refused`."""
    if not (registry.claimed or registry.pending) and all(
            push.typing == "gauges" for push in pushes):
        return pushes  # the usual batch: plain gauges, no histogram or summary to protect
    accepted = []
    for push in pushes:
        why = registry.check(push)
        if why is None:
            accepted.append(push)
        else:
            push.refused = why
    return accepted


def newest_per_source(pushes: Sequence[Push]) -> list[tuple[str, int]]:
    """Each source's newest sample time in the batch, sorted by source."""
    newest: dict[str, int] = {}
    for push in pushes:
        for group in push.groups:
            if newest.get(group.source, -1) < group.timestamp:
                newest[group.source] = group.timestamp
    return sorted(newest.items())


def oldest_sample(pushes: Sequence[Push]) -> int | None:
    """The oldest sample time in the batch."""
    return min((group.timestamp for push in pushes for group in push.groups), default=None)
