"""What PromQL and the status page read through: a blocking read connection each, off the
event loop (the engines' query.py and status.py), and the rows they answer with."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

from metrics_ingest.model import FamilyMeta
from metrics_ingest.store.sample_arrays import SampleArrays


class GroupTimes(NamedTuple):
    """A Pushgateway-API group's last successful and last refused push (0: never)."""

    source: str
    grouping: str  # canonical JSON of the path labels, "" for none
    pushed_at: float
    failed_at: float


class QuerySeries(NamedTuple):
    """A stored series as PromQL selects it: its labels are `__name__`, `source` and the
    pushed ones, as /metrics shows them."""

    id: int
    metric_name: str
    source: str
    labels: str  # sorted-key JSON, "" for none


# One series' samples in time order: timestamps (Unix seconds) and values, side by side.
SeriesSamples = tuple[list[int], list[float]]


def samples_by_series(cursor: Any, found: dict[int, SeriesSamples]) -> None:
    """Gather (series_id, timestamp, value) rows of a DB-API cursor into `found`, each
    series' samples in the order the cursor gives them."""
    while rows := cursor.fetchmany(4096):
        for series_id, timestamp, value in rows:
            held = found.get(series_id)
            if held is None:
                held = found[series_id] = ([], [])
            held[0].append(timestamp)
            held[1].append(value)


class QueryReader(Protocol):
    """A read connection that PromQL evaluates from, off the event loop: plain (blocking)
    calls, from one thread at a time. It never writes. A call that runs past the deadline
    set by `set_deadline` raises StorageError("interrupted")."""

    def series(self, name: str | None, since: int) -> list[QuerySeries]:
        """The series named `name` (every series when None) that have a sample at or after
        `since`, in id order: with the metric name, one index lookup."""
        ...

    def name_sources(self, since: int) -> list[tuple[str, str]]:
        """The distinct (metric name, source) pairs of the series with a sample at or after
        `since`, in no particular order."""
        ...

    # The label index: every series' label pairs, its source as `source` (sql/0009).
    def series_named(self, names: Sequence[str], since: int) -> list[QuerySeries]:
        """The series with one of these metric names and a sample at or after `since`, in
        id order."""
        ...

    def series_labelled(self, label: str, values: Sequence[str], names: Sequence[str] | None,
                        since: int) -> list[QuerySeries]:
        """The series whose `label` is one of `values` (through the label index), with one
        of `names` (any name when None) and a sample at or after `since`, in id order."""
        ...

    def count_named(self, names: Sequence[str]) -> int:
        """How many series have one of these names (whatever their age)."""
        ...

    def count_labelled(self, label: str, values: Sequence[str]) -> int:
        """How many series have `label` set to one of `values` (whatever their age)."""
        ...

    def label_values(self, label: str, since: int) -> list[str]:
        """The values `label` (`__name__`: the metric name) takes among the series with a
        sample at or after `since`, each once, in no particular order."""
        ...

    def label_names(self, since: int) -> list[str]:
        """The label names (`source` among them, not `__name__`) of the series with a sample
        at or after `since`, each once, in no particular order."""
        ...

    def samples(self, ids: Sequence[int], start: int, end: int) -> dict[int, SeriesSamples]:
        """The samples of these series with timestamps in [start, end]; a series without any
        is left out."""
        ...

    def sample_arrays(self, ids: Sequence[int], start: int, end: int) -> SampleArrays:
        """The same samples as `samples`, each series' in time order, as two arrays: keys
        (series_id << 32 | timestamp - start) and values (sample_arrays.py). SQLite reads
        closed windows from the packed blocks (sqlite/blocks.py)."""
        ...

    def stale_markers(self, ids: Sequence[int], start: int, end: int) -> dict[int, list[int]]:
        """The staleness markers (remote_write's "the series ended here") of these series
        with timestamps in [start, end], each series' in time order; a series without any is
        left out."""
        ...

    def families(self) -> dict[str, FamilyMeta]: ...

    def set_deadline(self, deadline: float | None) -> None:
        """time.monotonic() past which calls are interrupted (None: never)."""
        ...

    def close(self) -> None: ...


class SourceSeries(NamedTuple):
    """One of a source's series with its newest sample, for the status page."""

    id: int
    metric_name: str
    labels: str  # sorted-key JSON, "" for none
    value: float
    timestamp: int


class StatusReader(QueryReader, Protocol):
    """A read connection the status page reads from, off the event loop: plain (blocking)
    calls, from one thread at a time; it never writes. The samples of its sparklines come
    through the QueryReader calls (with their deadline)."""

    def source_times(self) -> dict[str, int]:
        """Every source's newest sample timestamp (Unix seconds)."""
        ...

    def series_counts(self) -> dict[str, int]:
        """The series stored per source (as ReadSession.series_counts)."""
        ...

    def groups(self) -> list[GroupTimes]: ...

    def source_series(self, source: str, limit: int) -> list[SourceSeries]:
        """At most `limit` of the source's exported series (not hidden by a group's
        replacement, deletion or TTL), by metric name then labels. The series table has
        no index by source: this reads all of it (SQLite: 50 ms for a million series)."""
        ...
