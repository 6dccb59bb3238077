"""Samples as the query engine takes them: two flat arrays, `keys` (series_id << 32 |
timestamp - start) and `values`, each series' samples in time order; and the packed blocks
an engine may keep of them for it (sqlite/blocks.py), built behind the writer."""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Protocol

import numpy as np
import numpy.typing as npt

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
SampleArrays = tuple[Ints, Floats]
GRACE_SECONDS = 120  # a window is made a block this long after its end, and pushes into
# closed windows (a late sample, a deletion) put the builder off for as long


def arrays_of_pairs(pairs: Sequence[tuple[int, float]]) -> SampleArrays:
    """(key, value) rows as fetched, as the two arrays."""
    count = len(pairs)
    return (np.fromiter(map(itemgetter(0), pairs), dtype=np.int64, count=count),
            np.fromiter(map(itemgetter(1), pairs), dtype=np.float64, count=count))


def joined(parts: list[SampleArrays]) -> SampleArrays:
    """Several parts' arrays one after the other (a series' parts in time order)."""
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    return (np.concatenate([keys for keys, _ in parts]),
            np.concatenate([values for _, values in parts]))


@dataclass(frozen=True)
class Plan:
    """A step of the builder, taken only while blocks_upto and blocks_epoch are still
    `upto` and `epoch`: blocks_upto moved to `end`, over a stretch without samples (`window`
    None), or by writing window `window`'s blocks of its samples in [window, end) (the open
    window is written again as it fills)."""

    upto: int
    epoch: int
    end: int
    window: int | None = None
    expired: bool = False  # passing over samples older than the retention (never made)


@dataclass(frozen=True)
class Slice:
    """The blocks of the series with ids in (low, high] of one window (high None: all
    above low; the window's last slice)."""

    low: int
    high: int | None
    rows: list[tuple[int, int, int, bytes, bytes]]


class BlockBuilder(Protocol):
    """Reads closed windows of samples for the blocks (off the writer: its calls run on a
    worker thread, one at a time); the writer commits what it yields
    (WriteSession.write_blocks)."""

    def epoch(self) -> int:
        """A number that changes whenever samples under the blocks change."""
        ...

    def plan(self, now: int, keep_from: int = 0) -> Plan | None:
        """The next step, or None while the blocks are as far on as they go for now;
        samples older than `keep_from` (the retention) are passed over, never made blocks."""
        ...

    def slices(self, plan: Plan) -> Generator[Slice, None, None]:
        """A window's blocks from one snapshot, a slice at a time; the last has high None.
        Read only once the plan is begun (WriteSession.write_blocks with no slice)."""
        ...

    def settle(self) -> None:
        """After a pass that wrote blocks: whatever makes them as quick to read as data
        written long ago (SQLite: a checkpoint)."""
        ...

    def close(self) -> None: ...
