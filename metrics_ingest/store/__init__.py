"""The storage interface: what the writer and the readers ask of a database engine.

Nothing outside this package knows which engine runs: `open_store` picks it from the
configured location, and everything else speaks `Store`, `WriteSession` and `ReadSession`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from metrics_ingest.config import Synchronous
from metrics_ingest.model import Change, FamilyMeta, Push
from metrics_ingest.selectors import Selector
from metrics_ingest.store.budgets import SeriesLimits
from metrics_ingest.store.query_readers import (
    GroupTimes,
    QueryReader,
    QuerySeries,
    SeriesSamples,
    SourceSeries,
    StatusReader,
    samples_by_series,
)
from metrics_ingest.store.sample_arrays import BlockBuilder, Plan, Slice

__all__ = ["GroupTimes", "QueryReader", "QuerySeries", "SeriesSamples", "SourceSeries",
           "StatusReader", "samples_by_series"]  # (defined in query_readers.py)


class StorageError(Exception):
    """The engine refused an operation (disk full, read-only file, lost connection).

    The message is the engine's own words, for logs and for the 503 a push gets.
    """


class StoreLost(StorageError):
    """The store is no longer the one opened (its file deleted or replaced): nothing written
    from now on would be kept, so nothing is, until the server is restarted."""


# What `db query` says, on either engine, to text holding more than one statement (none of
# them is run).
ONE_STATEMENT = "db query runs one statement at a time: give each its own db query"


class StoredSample(NamedTuple):
    source: str
    timestamp: int
    metric_name: str
    value: float
    labels: str


class Later:
    """A batch written but not yet committed (an engine overlapping commits: PostgreSQL's
    store/postgres/tails.py). `finish()`, called once, on a thread of its own, in batch
    order, commits it and returns its change, or raises StorageError (nothing of the batch
    stored)."""

    __slots__ = ("finish",)

    def __init__(self, finish: Callable[[], Change]) -> None:
        self.finish = finish


class WriteSession(Protocol):
    """An engine's write connection, used by the writer's thread alone, one call at a time."""

    def turn(self) -> AbstractContextManager[None]:
        """Hold while taking a batch and committing it, where writers sharing the store take
        turns (SQLite workers): pushes that arrive while a writer waits for its turn join
        its batch."""
        ...

    def commit(self, pushes: Sequence[Push]) -> Change | Later:
        """Store every push of the batch in one transaction, in order: for equal (series,
        timestamp) the later push wins, and a series' newest sample is kept as its latest.
        Pushgateway-API group operations and the families a push declares apply in the same
        transaction as its samples.

        A push whose declared family types clash with the stored ones (families.py) gets
        `refused` set and nothing of it is stored; the others commit. Returns what the commit
        changed, or a Later whose `finish` commits (batches commit in the order they were
        given either way). Raises StorageError if the transaction failed: then nothing of the
        batch is stored, and the session can take the next batch.
        """
        ...

    def prepare(self, push: Push) -> bool:
        """Find or create the next slice of a big push's series ahead of its commit, in a
        short transaction of its own (store/preparing.py); True once all are. Raises
        OverBudget (the push is refused, nothing of this slice created) or StorageError.
        Engines that resolve series inside the commit return True at once."""
        ...

    def unprepare(self, created: list[int]) -> None:
        """Remove series created for a prepared push that was not stored (`preparing.unused`),
        those still without a sample. Raises StorageError."""
        ...

    def claim_purge(self, slot: int) -> bool:
        """True for exactly one caller per scheduled purge `slot` (a minute number) among
        every server sharing the store: that one runs it."""
        ...

    def purge_chunk(self, cutoff: int) -> tuple[int, bool, Change]:
        """Delete a bounded chunk of the samples older than `cutoff` in a short transaction
        of its own; returns (samples deleted, finished, change). The finishing chunk also
        forgets series and groups left without samples. Raises StorageError (nothing of the
        chunk deleted)."""
        ...

    def probe(self, now: int) -> None:
        """Raise StorageError unless a write of a realistic size can commit now."""
        ...

    def expire_groups(self, now: float, default_ttl: float) -> Change | None:
        """Stop exporting Pushgateway-API groups past their TTL (store/groups.py, expire);
        the change to publish, or None when none expired."""
        ...

    def index_labels(self) -> bool:
        """Write the next slice of the label index where the engine writes it behind the
        batches (SQLite: store/sqlite/label_index.py), in a short transaction of its own;
        True while more remains. Engines that keep it inside each batch return False."""
        ...

    def write_blocks(self, plan: Plan, part: Slice | None) -> bool:
        """In a short transaction of its own, while the plan still holds: begin it (`part`
        None: a stretch without samples is passed over; a window to write has its samples
        frozen, so that a change to them refuses what was read before it), or commit one
        slice of the window's packed blocks. False: refused. Engines without blocks
        return False."""
        ...

    # Deleting series by selector (store/deletion.py, deleting.py): each call is a
    # transaction of its own.
    def deletion_ids(self, selector: Selector) -> list[int]: ...

    def deletion_windows(self, start: int, end: int) -> list[tuple[int, int]]: ...

    def delete_window(self, ids: list[int], start: int, end: int) -> int: ...

    def settle_deletion(self, ids: list[int], start: int, end: int) -> tuple[int, Change]:
        """(series forgotten, the change to publish)."""
        ...

    def outside_change(self) -> bool:
        """True when another connection has committed since the last call (or the first
        call): caches of what is stored must be rebuilt."""
        ...

    def check(self) -> None:
        """Raise StorageError if the store is no longer the one opened (a database file
        deleted or replaced underneath): nothing written now would be kept."""
        ...

    def close(self) -> None: ...


class ReadSession(Protocol):
    """An engine's read connection for the event loop; it never writes."""

    async def recent_samples(self, since: int, source: str | None, metric: str | None,
                             limit: int) -> list[StoredSample]:
        """Samples at or after `since`, newest first, optionally filtered."""
        ...

    async def active_sources(self, since: int) -> list[str]:
        """Sorted sources with a sample at or after `since`."""
        ...

    async def series_counts(self) -> dict[str, int]:
        """The series stored per source (what the series budgets count)."""
        ...

    async def close(self) -> None: ...


# (id, metric_name, source, labels, head: `name{labels}`, value, timestamp, pinned); labels
# are "" from rows_between
ExportRow = tuple[int, str, str, str, str, float, int, int]


class ExportReader(Protocol):
    """A read connection that /metrics renders from off the event loop: plain (blocking)
    calls, made from one thread at a time."""

    def rows_between(self, first: int, last: int, since: int) -> Iterator[ExportRow]:
        """Series exported now (visible, pinned or newer than `since`) with ids in
        [first, last], in id order."""
        ...

    def rows_named(self, names: Sequence[str], since: int) -> list[ExportRow]:
        """Series exported now with any of these metric names."""
        ...

    def families(self) -> dict[str, FamilyMeta]: ...

    def groups(self) -> list[GroupTimes]: ...

    def close(self) -> None: ...


class Store(Protocol):
    """A configured database: migrations, sessions and the operator's commands."""

    location: str  # for logs: a path, or a URL without its password

    def migrate(self) -> list[str]:
        """Apply the engine's schema files not applied yet, in order; returns their names."""
        ...

    def claim(self) -> None:
        """Claim the store for this server until `release`; raises StorageError naming the
        holder if another server already serves it and the engine cannot share it."""
        ...

    def release(self) -> None: ...

    def open_writer(self, synchronous: Synchronous) -> WriteSession:
        """A write session; call on the thread that will use it."""
        ...

    async def open_reader(self) -> ReadSession: ...

    def open_export_reader(self) -> ExportReader: ...

    def open_query_reader(self, mapped: bool = False) -> QueryReader:
        """A connection for PromQL queries; call on the thread that will use it
        first (it may move between threads, used by one at a time). `mapped`: the engine
        may map the database into memory for faster reads, where a failed read of the file
        kills the process (SIGBUS): for the query workers, which the server replaces."""
        ...

    def open_status_reader(self) -> StatusReader:
        """A connection for the status page; as open_query_reader."""
        ...

    def open_block_builder(self) -> BlockBuilder | None:
        """What reads samples for the packed blocks (sample_arrays.py), or None when the
        engine keeps none."""
        ...

    def size_bytes(self) -> int:
        """What the data takes on disk (0 when unknown)."""
        ...

    def open_feed(self) -> ChangeFeed | None:
        """The change feed from other servers, or None when no other server writes to it."""
        ...

    def query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]], int | None]:
        """Run one ad-hoc statement for `db query`; returns (columns, rows, rows changed by a
        statement that returns none, else None). A running server notices the change at its
        next read or write. Text holding several statements runs none of them: StorageError
        (ONE_STATEMENT)."""
        ...


class ChangeFeed(Protocol):
    """What other servers sharing the store committed, for this server's /metrics cache."""

    async def drain(self) -> list[Change]:
        """Every change other servers committed before this call, in commit order. Raises
        StorageError while the database cannot be reached."""
        ...

    async def close(self) -> None: ...


def open_store(location: str | Path, shared: bool = False,
               limits: SeriesLimits | None = None) -> Store:
    """The store at `location`: a postgresql:// URL, else an SQLite file's path. `shared`:
    this process is one of `serve --workers N` (PostgreSQL is always shared). `limits`: the
    series budgets its writer enforces (none for the operator's commands)."""
    if isinstance(location, str) and location.startswith(("postgresql://", "postgres://")):
        from metrics_ingest.store.postgres import PostgresStore

        return PostgresStore(location, limits)
    from metrics_ingest.store.sqlite import SQLiteStore

    return SQLiteStore(Path(location), shared, limits)
