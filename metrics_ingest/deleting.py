"""Deleting series by selector through the writer, for `POST
/api/v1/admin/tsdb/delete_series` and `metrics-ingest delete`: the steps of
store/deletion.py, each a transaction of its own between batches, so pushes keep committing
while a big deletion runs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import NamedTuple

from metrics_ingest.selectors import Selector
from metrics_ingest.store import Store, WriteSession
from metrics_ingest.telemetry import Telemetry
from metrics_ingest.writer import Writer

log = logging.getLogger("metrics_ingest.deleting")

EVER = (-(2**62), 2**62)  # no start, no end


class Deleted(NamedTuple):
    series_matched: int
    samples: int
    series_forgotten: int
    seconds: float


async def delete_series(writer: Writer, selectors: Sequence[Selector], start: int, end: int,
                        progress: Callable[[str], None] | None = None) -> Deleted:
    """Delete the samples in [start, end] of every series a selector matches, and the
    series left without samples. /metrics and every read reflect it once this returns."""
    started = time.monotonic()
    ids: set[int] = set()
    for selector in selectors:
        ids.update(await writer.call(partial(ids_of, selector)))
    matched = sorted(ids)
    if not matched:
        return Deleted(0, 0, 0, time.monotonic() - started)
    windows = await writer.call(lambda session: session.deletion_windows(start, end))
    samples = 0
    for number, (first, last) in enumerate(windows, 1):
        samples += await writer.call(partial(window_of, matched, first, last))
        if progress is not None and (number % 20 == 0 or number == len(windows)):
            progress(f"{number}/{len(windows)} time slices, {samples} samples deleted")
    forgotten, change = await writer.call(
        lambda session: session.settle_deletion(matched, start, end))
    writer.publish(change)
    return Deleted(len(matched), samples, forgotten, time.monotonic() - started)


def ids_of(selector: Selector, session: WriteSession) -> list[int]:
    return session.deletion_ids(selector)


def window_of(ids: list[int], start: int, end: int, session: WriteSession) -> int:
    return session.delete_window(ids, start, end)


async def delete_offline(store: Store, selectors: Sequence[Selector], start: int, end: int,
                         progress: Callable[[str], None] | None = None) -> Deleted:
    """`metrics-ingest delete`: the same steps on a writer of its own. Beside a running
    server, each step is a short transaction the server notices and reads again."""
    writer = Writer(store, "full", Telemetry(), 1, 1)
    await writer.start()
    try:
        return await delete_series(writer, selectors, start, end, progress)
    finally:
        await writer.stop()
