"""The SQLite write session: the one write connection, its PRAGMAs, and every write made
through it (batches, push groups, purge chunks, probes). Confined to the writer's thread."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import cast

from metrics_ingest.config import Synchronous
from metrics_ingest.model import Change, Push
from metrics_ingest.store import StorageError, StoreLost, groups
from metrics_ingest.store.batch import SELECT_FAMILIES, checked, load_registry, newest_per_source
from metrics_ingest.store.series_cache import SeriesCache
from metrics_ingest.store.sqlite.series import SQLiteSeriesTable
from metrics_ingest.store.sqlite.sql import (
    CLAIM_PURGE_SLOT,
    DELETE_EMPTY_GROUPS,
    DELETE_EXPIRED_LATEST,
    DELETE_EXPIRED_MEMBERS,
    DELETE_EXPIRED_SERIES,
    DELETE_EXPIRED_SOURCES,
    DELETE_GROW_PROBE,
    DELETE_SAMPLES_BEFORE,
    DELETE_SAMPLES_BEFORE_KEY,
    DELETE_SOURCES,
    GROUPS,
    GROW_PROBE,
    PROBE_GROWTH_BYTES,
    RECOUNT_SOURCES,
    SELECT_DATA_VERSION,
    SELECT_PURGE_BOUNDARY,
    SET_SYNCHRONOUS,
    UPSERT_FAMILY,
    UPSERT_LATESTS,
    UPSERT_SAMPLES,
    UPSERT_SOURCE,
    VALUES_CHUNK_ROWS,
    WRITE_PROBE,
)

PURGE_CHUNK_ROWS = 5000


def connect(db_path: Path, synchronous: Synchronous) -> sqlite3.Connection:
    conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        # full: the WAL is fsynced at every commit, so an acknowledged push survives power
        # loss. normal: fsync only at checkpoints; survives a process crash, not an OS crash.
        conn.execute(SET_SYNCHRONOUS[synchronous])
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA cache_size=-8192")  # KiB; inserts append, 8 MiB holds the hot edge
        conn.execute("PRAGMA temp_store=MEMORY")
    except BaseException:
        conn.close()
        raise
    return conn


@contextmanager
def immediate_transaction(db: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK (and re-raise) on any error: all or nothing."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise


@contextmanager
def engine_errors() -> Iterator[None]:
    """SQLite's errors as the store's StorageError, with SQLite's words."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StorageError(str(exc)) from exc


def insert_rows(db: sqlite3.Connection, samples: list[int | float],
                latest: list[int | float]) -> None:
    """Write one batch's rows; the caller owns the surrounding transaction.

    `samples` is flat (timestamp, series_id, value, ...), `latest` flat (series_id,
    timestamp, value, ...). Rows with the same key: the last one wins.
    """
    insert_flat(db, UPSERT_SAMPLES, samples)
    insert_flat(db, UPSERT_LATESTS, latest)


def insert_flat(db: sqlite3.Connection, statements: dict[int, str],
                params: list[int | float]) -> None:
    """Rows of three values, flattened, through the largest chunk statements that fit."""
    rows = len(params) // 3
    start = 0
    size = VALUES_CHUNK_ROWS
    while start < rows:
        while size > rows - start:
            size //= 2
        db.execute(statements[size], params[start * 3:(start + size) * 3])
        start += size


def purge_chunk(db: sqlite3.Connection, cutoff: int, chunk: int) -> tuple[int, bool]:
    """Delete up to `chunk` of the oldest samples older than `cutoff`; the caller commits.

    Returns (rows deleted, finished). Deleting a leading key range keeps every chunk cheap.
    """
    boundary = db.execute(SELECT_PURGE_BOUNDARY, (cutoff, chunk)).fetchone()
    if boundary is None:
        return db.execute(DELETE_SAMPLES_BEFORE, (cutoff,)).rowcount, True
    timestamp, series_id = boundary
    return db.execute(DELETE_SAMPLES_BEFORE_KEY, (timestamp, timestamp, series_id)).rowcount, False


def purge_expired_series(db: sqlite3.Connection, cutoff: int) -> int:
    """Forget series whose newest sample is older than `cutoff` (their samples are gone)."""
    db.execute(DELETE_EXPIRED_MEMBERS, (cutoff,))
    db.execute(DELETE_EMPTY_GROUPS, (cutoff,))
    forgotten = db.execute(DELETE_EXPIRED_SERIES, (cutoff,)).rowcount
    db.execute(DELETE_EXPIRED_LATEST, (cutoff,))
    db.execute(DELETE_EXPIRED_SOURCES, (cutoff,))
    return forgotten


def write_probe(db: sqlite3.Connection, now: int) -> None:
    """Raise sqlite3.Error unless 256 KiB can really be written and committed now.

    A one-page write is not enough: on a nearly full disk it can fit where a push cannot, and
    readiness would flap. The blob is committed (so the WAL must grow and the disk must take
    it), then deleted again.
    """
    with immediate_transaction(db):
        db.execute(GROW_PROBE, (now, PROBE_GROWTH_BYTES))
    with immediate_transaction(db):
        db.execute(DELETE_GROW_PROBE)
        db.execute(WRITE_PROBE, (now,))


def file_identity(path: Path) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino


class SQLiteWriteSession:
    """The store's WriteSession over one sqlite3 connection (see store.WriteSession).

    Series ids come from the series cache over the table; another connection's commit
    (`metrics-ingest purge`, `db query`) is noticed through PRAGMA data_version and the cache
    (and the family registry) reloaded before they are used again.
    """

    def __init__(self, db_path: Path, synchronous: Synchronous) -> None:
        self.db_path = db_path
        with engine_errors():
            self.db = connect(db_path, synchronous)
            self.registry = load_registry(self.db.execute(SELECT_FAMILIES))
            self.identity = file_identity(db_path)
        self.series = SeriesCache()
        self.table = SQLiteSeriesTable(self.db)
        self.data_version = -1

    def check(self) -> None:
        """Raise StorageError unless the file at the path is still the one open: a commit to
        a deleted or replaced file is lost at the next restart, so it is never acknowledged."""
        try:
            same = file_identity(self.db_path) == self.identity
        except OSError:
            same = False
        if not same:
            raise StoreLost(
                f"the database file {self.db_path} was deleted or replaced while the server "
                "had it open; nothing more is stored until the server is restarted")

    def _refresh(self) -> bool:
        """Drop what is cached if another connection committed since; True if it did."""
        version = int(self.db.execute(SELECT_DATA_VERSION).fetchone()[0])
        if version == self.data_version:
            return False
        self.data_version = version
        self.series.clear()
        self.registry = load_registry(self.db.execute(SELECT_FAMILIES))
        return True

    def commit(self, pushes: Sequence[Push]) -> Change:
        db = self.db
        series = self.series
        # BEGIN/COMMIT inline rather than through immediate_transaction: this runs once per
        # batch on the writer thread, which shares the GIL with every request.
        try:
            db.execute("BEGIN IMMEDIATE")
            reloaded = self._refresh()
            registry = self.registry
            accepted = checked(pushes, registry)
            samples, latest = series.rows(self.table, accepted)
            insert_rows(db, samples, latest)
            if accepted:
                db.executemany(UPSERT_SOURCE, newest_per_source(accepted))
            touched = cast(list[int], latest[0::3])  # (series_id, timestamp, value), flat
            group_pushed = False
            for push in pushes:
                group = push.group
                if group is not None:
                    group_pushed = True
                    if push.refused is not None or group.op == "fail":
                        groups.record_failure(db, GROUPS, group.grouping, push.received_at)
                    else:
                        touched += groups.apply(db, GROUPS, series, push)
            if registry.pending:
                db.executemany(UPSERT_FAMILY, [(name, meta.type, meta.help)
                                               for name, meta in registry.pending.items()])
            db.execute("COMMIT")
            self.check()
        except BaseException as exc:
            self.registry.discard()
            series.forget_pending()
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StorageError(str(exc)) from exc
            raise
        series.adopt()  # (a lost file raised above: its series are not adopted)
        families = registry.adopt()
        return Change(touched, reloaded, families or None, group_pushed)

    def claim_purge(self, slot: int) -> bool:
        with engine_errors(), immediate_transaction(self.db):
            return self.db.execute(CLAIM_PURGE_SLOT, (slot, slot)).rowcount == 1

    def purge_chunk(self, cutoff: int) -> tuple[int, bool, Change]:
        db = self.db
        self.check()
        with engine_errors():
            with immediate_transaction(db):
                self._refresh()
                deleted, finished = purge_chunk(db, cutoff, PURGE_CHUNK_ROWS)
                forgotten = purge_expired_series(db, cutoff) if finished else 0
            if forgotten:
                self.series.clear()
        return deleted, finished, Change([], everything=True)

    def probe(self, now: int) -> None:
        with engine_errors():
            write_probe(self.db, now)
        self.check()

    def outside_change(self) -> bool:
        with engine_errors():
            if not self._refresh():
                return False
            # Another process may have deleted a source's newest samples (the Worker's
            # manual cleanup through the view): count the sources again.
            with immediate_transaction(self.db):
                self.db.execute(DELETE_SOURCES)
                self.db.execute(RECOUNT_SOURCES)
            return True

    def close(self) -> None:
        self.db.close()
