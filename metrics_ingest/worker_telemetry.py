"""The service's own metrics as one service's, whichever `serve --workers` worker answers.

Each worker counts on its own loop, as a lone server does (telemetry.py), and writes a
snapshot of its counts to `worker-<index>.json` in a directory its supervisor made, every
PUBLISH_SECONDS and before it shows any. `/metrics` and the status page show the sum of
every worker's latest snapshot (the newest receipt and purge times, not sums of them), so
Prometheus reads one set of counters on one port rather than a different worker's at
each scrape (a fall it would take for a counter reset).

The sums never fall between two scrapes, whichever workers answer them: the answering worker
writes its own snapshot before it reads the others', so each snapshot read is at least as
new as any read before; a snapshot that cannot be read counts as the last one that could
(and its directory, if it went, is made again). A worker started in a dead one's place
takes over that worker's snapshot and counts on from it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from metrics_ingest.outages import OutageLog
from metrics_ingest.telemetry import Histogram, LabelPairs, Telemetry

log = logging.getLogger("metrics_ingest.workers")

PUBLISH_SECONDS = 1.0


class ServiceTelemetry:
    """What `/metrics` and the status page show of the service's own metrics: this
    process's Telemetry alone, or with `directory`, every worker's summed.

    `names` names the push formats that `Telemetry.pushed_with` is keyed by (a snapshot
    holds their names); `queued` reads this process's writer queue (samples)."""

    def __init__(self, telemetry: Telemetry, queued: Callable[[], int],
                 names: Mapping[object, str], directory: Path | None = None,
                 index: int = 0) -> None:
        self.telemetry = telemetry
        self.queued = queued
        self.names = dict(names)
        self.formats = {name: fmt for fmt, name in self.names.items()}
        self.directory = directory
        self.path = None if directory is None else directory / f"worker-{index}.json"
        self.writing = OutageLog(log, f"worker {index}'s counts for the others",
                                 logging.WARNING)
        self.last_good: dict[Path, dict[str, Any]] = {}  # the other workers' snapshots
        self.unreadable: set[Path] = set()

    def take_over(self) -> None:
        """Count on from the snapshot a dead worker of this index left, if any."""
        if self.path is None:
            return
        before = self.read_snapshot(self.path)
        if before is not None:
            add(self.telemetry, before, self.formats)

    def read(self) -> tuple[Telemetry, int]:
        """(the service's telemetry, samples queued for its writers)."""
        if self.directory is None or self.path is None:
            return self.telemetry, self.queued()
        own = self.publish()
        whole = Telemetry()
        add(whole, own, self.formats)
        queued = int(own["queued"])
        others = (set(self.directory.glob("worker-*.json")) | set(self.last_good)) - {self.path}
        for path in sorted(others):
            snapshot = self.read_snapshot(path)
            if snapshot is None:
                snapshot = self.last_good.get(path)
            else:
                self.last_good[path] = snapshot
            if snapshot is not None:
                add(whole, snapshot, self.formats)
                queued += int(snapshot.get("queued", 0))
        return whole, queued

    def publish(self) -> dict[str, Any]:
        """Write this worker's snapshot (replacing the last one whole); the snapshot."""
        snapshot = {**snapshot_of(self.telemetry, self.names), "queued": self.queued()}
        if self.path is None:
            return snapshot
        partial = self.path.with_suffix(".partial")
        body = orjson.dumps(snapshot)
        try:
            try:
                partial.write_bytes(body)
            except FileNotFoundError:  # (the directory removed from outside: made again)
                self.path.parent.mkdir(mode=0o700, exist_ok=True)
                partial.write_bytes(body)
            os.replace(partial, self.path)
        except OSError as exc:
            self.writing.failed("cannot write %s: %s", self.path, exc)
            return snapshot
        self.writing.working()
        return snapshot

    async def publish_every(self, seconds: float = PUBLISH_SECONDS) -> None:
        """Until cancelled, then once more (what the drain committed)."""
        if self.path is None:
            return
        try:
            while True:
                await asyncio.sleep(seconds)
                self.publish()
        finally:
            self.publish()

    def read_snapshot(self, path: Path) -> dict[str, Any] | None:
        """The snapshot at `path`; None when there is none (a worker yet to write one) or
        it cannot be read (said once until it can)."""
        try:
            found = orjson.loads(path.read_bytes())
            if not isinstance(found, dict):
                raise ValueError("not a JSON object")
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:  # (orjson.JSONDecodeError is a ValueError)
            if path not in self.unreadable:
                self.unreadable.add(path)
                log.warning("cannot read %s: %s (its last figures stand until it can be "
                            "read)", path, exc)
            return None
        self.unreadable.discard(path)
        return found


def snapshot_of(telemetry: Telemetry, names: Mapping[object, str]) -> dict[str, Any]:
    """A worker's counts as JSON-ready data (labels as lists)."""
    return {
        "samples_received": dict(telemetry.samples_received),
        "requests": [[route, code, n] for (route, code), n in telemetry.requests.items()],
        "token_requests": dict(telemetry.token_requests),
        "rejected_pushes": [[[list(pair) for pair in pairs], n]
                            for pairs, n in telemetry.rejected_pushes.items()],
        "skipped_samples": [[reason, source, n]
                            for (reason, source), n in telemetry.skipped_samples.items()],
        "last_push": dict(telemetry.last_push),
        "batch_samples": histogram_of(telemetry.batch_samples),
        "flush_duration": histogram_of(telemetry.flush_duration),
        "purged_samples": telemetry.purged_samples,
        "last_purge": telemetry.last_purge,
        "pushed_with": {names.get(fmt, "other"): dict(sources)
                        for fmt, sources in telemetry.pushed_with.items()},
    }


def histogram_of(histogram: Histogram) -> list[Any]:
    return [list(histogram.counts), histogram.total, histogram.count]


def add(into: Telemetry, snapshot: Mapping[str, Any], formats: Mapping[str, object]) -> None:
    """Add a snapshot's counts to `into`: counters and histograms summed, the last push and
    purge times the newest of the two."""
    for source, n in snapshot.get("samples_received", {}).items():
        into.samples_received[source] += n
    for route, code, n in snapshot.get("requests", ()):
        into.requests[(route, code)] += n
    for name, n in snapshot.get("token_requests", {}).items():
        into.token_requests[name] += n
    for pairs, n in snapshot.get("rejected_pushes", ()):
        labels: LabelPairs = tuple((str(key), str(value)) for key, value in pairs)
        into.rejected_pushes[labels] += n
    for reason, source, n in snapshot.get("skipped_samples", ()):
        into.skipped_samples[(reason, source)] += n
    newest(into.last_push, snapshot.get("last_push", {}).items())
    add_histogram(into.batch_samples, snapshot.get("batch_samples"))
    add_histogram(into.flush_duration, snapshot.get("flush_duration"))
    into.purged_samples += int(snapshot.get("purged_samples", 0))
    into.last_purge = max(into.last_purge, float(snapshot.get("last_purge", 0.0)))
    for name, sources in snapshot.get("pushed_with", {}).items():
        newest(into.pushed_with[formats.get(name, name)], sources.items())


def newest(into: dict[str, float], times: Iterable[tuple[str, float]]) -> None:
    for source, seconds in times:
        if seconds > into.get(source, float("-inf")):
            into[source] = seconds


def add_histogram(into: Histogram, counted: list[Any] | None) -> None:
    if not counted:
        return
    counts, total, count = counted
    if len(counts) != len(into.counts):  # (another version's buckets: not comparable)
        return
    into.counts = [a + b for a, b in zip(into.counts, counts, strict=True)]
    into.total += total
    into.count += count
