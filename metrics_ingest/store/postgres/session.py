"""The PostgreSQL write session: one connection on the writer's thread, every write made
through it, and the change notice each commit sends the other servers."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import cast

import psycopg
from psycopg import errors

from metrics_ingest.model import Change, Push
from metrics_ingest.selectors import Selector
from metrics_ingest.store import StorageError, deletion, groups
from metrics_ingest.store.batch import SELECT_FAMILIES, checked, load_registry, newest_per_source
from metrics_ingest.store.budgets import SeriesLimits
from metrics_ingest.store.changes import encode_change
from metrics_ingest.store.postgres import partitions
from metrics_ingest.store.postgres.connection import broken, connect, discard, engine_errors
from metrics_ingest.store.postgres.rows import write_rows
from metrics_ingest.store.postgres.series import PostgresSeriesTable
from metrics_ingest.store.postgres.sql import (
    ADVISORY_LOCK,
    ADVISORY_LOCK_SHARED,
    BUMP_FAMILIES_VERSION,
    CHANNEL,
    CLAIM_PURGE_SLOT,
    COPY_MIN_ROWS,
    DELETE_EMPTY_GROUPS,
    DELETE_EXPIRED_LATEST,
    DELETE_EXPIRED_MARKERS,
    DELETE_EXPIRED_MEMBERS,
    DELETE_EXPIRED_SERIES,
    DELETE_EXPIRED_SOURCES,
    DELETE_GROW_PROBE,
    DELETION,
    FORGET_TTL_LATEST,
    FORGET_TTL_SAMPLES,
    FORGET_TTL_SERIES,
    GROUPS,
    GROW_PROBE,
    INSERT_STALE_MARKERS,
    NOTIFY,
    PROBE_GROWTH_BYTES,
    SELECT_STATE,
    SERIES_LOCK,
    UPSERT_FAMILIES,
    UPSERT_SOURCES,
    WRITE_PROBE,
)
from metrics_ingest.store.sample_arrays import Plan, Slice
from metrics_ingest.store.series_cache import SeriesCache

PURGE_CHUNK_ROWS = 5000
# A batch that lost a race with another server (a deadlock, a partition attached while it
# routed a row) is tried again this many times before its pushes get 503.
ATTEMPTS = 3
RETRIED = (errors.DeadlockDetected, errors.SerializationFailure, errors.CheckViolation)


class StaleFamilies(Exception):
    """Another server declared families since this batch was checked: check it again."""


class PostgresWriteSession:
    """The store's WriteSession over one psycopg connection (see store.WriteSession).

    Several servers write at once. Each commit takes the series lock shared (a purge
    forgetting series takes it exclusively) and reads `store_state`: a changed series epoch
    empties the series cache, a changed families version reloads the family registry. A lost
    connection fails the batch (503) and is replaced on the next call.
    """

    def __init__(self, url: str, origin: str, limits: SeriesLimits | None = None) -> None:
        self.url = url
        self.origin = origin
        self.limits = limits
        self.conn: psycopg.Connection | None = None
        self.series = SeriesCache()
        self.registry = load_registry([])
        self.epoch = -1
        self.families_version = -1
        self.days: set[int] = set()
        self._connection()

    def _connection(self) -> psycopg.Connection:
        if broken(self.conn):
            discard(self.conn)
            self.conn = connect(self.url, "writer")
            self.epoch = self.families_version = -1  # read everything again
            with engine_errors(self.url):
                self.days = partitions.days_of(self.conn)
        assert self.conn is not None
        return self.conn

    def check(self) -> None:
        """Nothing to check underneath: the database is the server's (a lost connection
        fails the next write, which replaces it)."""

    def turn(self) -> AbstractContextManager[None]:
        """Servers commit side by side: rows they both touch are locked per transaction."""
        return contextlib.nullcontext()

    def commit(self, pushes: Sequence[Push]) -> Change:
        for attempt in range(ATTEMPTS):
            try:
                with engine_errors(self.url):
                    return self._commit_once(pushes)
            except StorageError as exc:
                if not isinstance(exc.__cause__, RETRIED) or attempt == ATTEMPTS - 1:
                    raise
            except StaleFamilies:
                pass
            for push in pushes:
                push.refused = None
        raise StorageError("PostgreSQL: families kept changing under the batch")

    def _commit_once(self, pushes: Sequence[Push]) -> Change:
        conn = self._connection()
        self._make_partitions(pushes)
        series = self.series
        # A small batch goes in pipeline mode: its statements travel together, two round
        # trips in all (the state read, then the rest with COMMIT) instead of eight.
        small = sum(push.samples for push in pushes) < COPY_MIN_ROWS
        try:
            with conn.pipeline() if small else contextlib.nullcontext(), conn.transaction():
                reloaded = self._read_state(conn)
                registry = self.registry
                accepted = checked(pushes, registry)
                if registry.pending:
                    row = conn.execute(BUMP_FAMILIES_VERSION).fetchone()
                    if row is None or row[0] != self.families_version + 1:
                        raise StaleFamilies
                samples, latest = series.rows(PostgresSeriesTable(conn), accepted,
                                              self.limits)
                if self.limits is not None:
                    accepted = [push for push in accepted if push.refused is None]
                write_rows(conn, samples, latest, small)
                markers = series.markers(PostgresSeriesTable(conn), accepted)
                if markers:
                    conn.execute(INSERT_STALE_MARKERS, ([m[0] for m in markers],
                                                        [m[1] for m in markers]))
                if accepted:
                    newest = newest_per_source(accepted)
                    conn.execute(UPSERT_SOURCES, ([s for s, _ in newest], [t for _, t in newest]))
                touched = cast(list[int], latest[0::3])
                group_series = self._apply_groups(conn, pushes)
                touched += group_series or []
                if registry.pending:
                    pending = registry.pending.items()
                    conn.execute(UPSERT_FAMILIES, ([n for n, _ in pending],
                                                   [m.type for _, m in pending],
                                                   [m.help for _, m in pending]))
                change = Change(touched, reloaded, dict(registry.pending) or None,
                                group_series is not None)
                conn.execute(NOTIFY, (CHANNEL, encode_change(self.origin, change)))
        except BaseException as exc:
            self.registry.discard()
            series.forget_pending()
            if isinstance(exc, StaleFamilies):
                self.families_version = -1  # reload before checking again
            raise
        series.adopt()
        if registry.pending:
            self.families_version += 1
        families = registry.adopt()
        return change._replace(families=families or None)

    def _read_state(self, conn: psycopg.Connection) -> bool:
        """Take the series lock shared and bring the caches up to date; True if the series
        cache was emptied (another server forgot series)."""
        conn.execute(ADVISORY_LOCK_SHARED, (SERIES_LOCK,))
        row = conn.execute(SELECT_STATE).fetchone()
        assert row is not None
        epoch, version = row
        emptied = False
        if epoch != self.epoch:
            emptied = self.epoch != -1
            self.series.clear()
            self.epoch = epoch
        if version != self.families_version:
            self.registry = load_registry(conn.execute(SELECT_FAMILIES))
            self.families_version = version
        return emptied

    def _apply_groups(self, conn: psycopg.Connection, pushes: Sequence[Push]) -> list[int] | None:
        """Pushgateway-API group operations; None when the batch has none."""
        touched: list[int] | None = None
        cursor = conn.cursor()
        for push in pushes:
            group = push.group
            if group is None:
                continue
            touched = touched or []
            if push.refused is not None or group.op == "fail":
                groups.record_failure(cursor, GROUPS, group.grouping, push.received_at)
            else:
                touched += groups.apply(cursor, GROUPS, self.series, push)
        return touched

    def _make_partitions(self, pushes: Sequence[Push]) -> None:
        """Partitions for the batch's days (and today's and tomorrow's) before its
        transaction."""
        today = int(time.time()) // partitions.DAY
        wanted = {today, today + 1}
        wanted.update(group.timestamp // partitions.DAY for push in pushes
                      for group in push.groups)
        wanted = {day for day in wanted if today - partitions.PAST_DAYS <= day <= today + 1}
        if not wanted <= self.days:
            self.days = partitions.create(self._connection(), wanted)

    def claim_purge(self, slot: int) -> bool:
        with engine_errors(self.url):
            cursor = self._connection().execute(CLAIM_PURGE_SLOT, (slot, slot))
            return cursor.rowcount == 1

    def purge_chunk(self, cutoff: int) -> tuple[int, bool, Change]:
        """Whole expired days first (one per call), then chunks of the boundary day and of
        the default partition; the finishing call forgets expired series."""
        with engine_errors(self.url):
            conn = self._connection()
            self.days = partitions.days_of(conn)
            dropped = partitions.drop_oldest(conn, cutoff)
            if dropped is not None:
                self.days = partitions.days_of(conn)
                return dropped, False, Change([])
            boundary = [f"samples_d{day}" for day in sorted(self.days)
                        if day * partitions.DAY < cutoff]
            with conn.transaction():
                deleted = sum(partitions.delete_chunk(conn, table, cutoff, PURGE_CHUNK_ROWS)
                              for table in [*boundary, "samples_default"])
            if deleted:
                return deleted, False, Change([])
            with conn.transaction():
                conn.execute(ADVISORY_LOCK, (SERIES_LOCK,))
                for statement in (DELETE_EXPIRED_MEMBERS, DELETE_EMPTY_GROUPS,
                                  DELETE_EXPIRED_SERIES, DELETE_EXPIRED_LATEST):
                    conn.execute(statement, (cutoff,))
                for statement in (FORGET_TTL_SAMPLES, FORGET_TTL_SERIES, FORGET_TTL_LATEST):
                    conn.execute(statement)
                conn.execute(DELETE_EXPIRED_MARKERS, (cutoff,))
                conn.execute(DELETE_EXPIRED_SOURCES, (cutoff,))
                conn.execute(NOTIFY, (CHANNEL, encode_change(self.origin, Change([], True))))
            return 0, True, Change([], everything=True)

    def probe(self, now: int) -> None:
        """A 256 KiB row committed and deleted again, then the probe row."""
        with engine_errors(self.url):
            conn = self._connection()
            with conn.transaction():
                conn.execute(GROW_PROBE, (now, os.urandom(PROBE_GROWTH_BYTES)))
            with conn.transaction():
                conn.execute(DELETE_GROW_PROBE)
                conn.execute(WRITE_PROBE, (now,))

    def expire_groups(self, now: float, default_ttl: float) -> Change | None:
        with engine_errors(self.url):
            conn = self._connection()
            with conn.transaction():
                hidden = groups.expire(conn.cursor(), GROUPS, now, default_ttl)
                if not hidden:
                    return None
                change = Change(hidden, groups=True)
                conn.execute(NOTIFY, (CHANNEL, encode_change(self.origin, change)))
        return change

    def prepare(self, push: Push) -> bool:
        return True  # series are resolved inside the commit, as before (store/preparing.py)

    def unprepare(self, created: list[int]) -> None:
        pass  # nothing is created ahead

    def index_labels(self) -> bool:
        return False  # a statement trigger keeps the label index (sql/postgres/0004)

    def write_blocks(self, plan: Plan, part: Slice | None) -> bool:
        return False  # no packed blocks (PostgresStore.open_block_builder)

    def deletion_ids(self, selector: Selector) -> list[int]:
        with engine_errors(self.url):
            return deletion.matching_series(self._connection().cursor(), DELETION, selector)

    def deletion_windows(self, start: int, end: int) -> list[tuple[int, int]]:
        with engine_errors(self.url):
            return deletion.windows(self._connection().cursor(), DELETION, start, end)

    def delete_window(self, ids: list[int], start: int, end: int) -> int:
        with engine_errors(self.url):
            conn = self._connection()
            with conn.transaction():
                return deletion.delete_window(conn.cursor(), DELETION, ids, start, end)

    def settle_deletion(self, ids: list[int], start: int, end: int) -> tuple[int, Change]:
        """Series are forgotten under the series lock held exclusively, as the purge does:
        no writer holds an id of one meanwhile."""
        with engine_errors(self.url):
            conn = self._connection()
            with conn.transaction():
                conn.execute(ADVISORY_LOCK, (SERIES_LOCK,))
                touched, forgotten = deletion.settle(conn.cursor(), DELETION, ids, start, end)
                change = Change(touched, groups=bool(forgotten))
                conn.execute(NOTIFY, (CHANNEL, encode_change(self.origin, change)))
        return forgotten, change

    def outside_change(self) -> bool:
        """Other servers' commits arrive through the change feed, not here."""
        return False

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()

