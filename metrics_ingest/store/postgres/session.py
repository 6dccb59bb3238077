"""The PostgreSQL write session: two connections on the writer's thread (a batch's tail may
finish on the committer thread, tails.py), every write made through them, and the change
notice each commit sends the other servers."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import cast

import psycopg
from psycopg import errors

from metrics_ingest.model import Change, Push
from metrics_ingest.selectors import Selector
from metrics_ingest.store import Later, StorageError, deletion, groups
from metrics_ingest.store.batch import SELECT_FAMILIES, checked, load_registry, newest_per_source
from metrics_ingest.store.budgets import SeriesLimits
from metrics_ingest.store.changes import encode_change
from metrics_ingest.store.postgres import partitions, upkeep
from metrics_ingest.store.postgres.connection import bounded_waits, engine_errors
from metrics_ingest.store.postgres.rows import copy_samples, upsert_rows, write_latest
from metrics_ingest.store.postgres.series import PostgresSeriesTable
from metrics_ingest.store.postgres.sql import (
    ADVISORY_LOCK_SHARED,
    BEGIN,
    BUMP_FAMILIES_VERSION,
    CHANNEL,
    CLAIM_PURGE_SLOT,
    COMMIT,
    COPY_MIN_ROWS,
    DELETION,
    GROUPS,
    INSERT_STALE_MARKERS,
    NOTIFY,
    SELECT_STATE,
    SERIES_LOCK,
    UPSERT_FAMILIES,
    UPSERT_SOURCES,
)
from metrics_ingest.store.postgres.tails import SLOTS, Turns
from metrics_ingest.store.sample_arrays import Plan, Slice
from metrics_ingest.store.series_cache import SeriesCache

# A batch's tail overlaps the next batch's COPY from this many samples (below, the thread
# hand-off costs more than it saves: W1 lost 5%).
OVERLAP_MIN_ROWS = 1000
# A batch that lost a race with another server (a deadlock, a partition attached while it
# routed a row) is tried again this many times before its pushes get 503.
ATTEMPTS = 3
RETRIED = (errors.DeadlockDetected, errors.SerializationFailure, errors.CheckViolation)


class DuplicateSamples(Exception):
    """A big batch's COPY met a stored sample (a retried push): the batch goes again, its
    samples upserted."""


class StaleFamilies(Exception):
    """Another server declared families since this batch was checked: check it again."""


class PostgresWriteSession:
    """The store's WriteSession over two psycopg connections taking turns, a big plain
    batch's COMMIT overlapping the next batch's COPY (tails.py; see store.WriteSession).

    Several servers write at once. Each commit takes the series lock shared (a purge
    forgetting series takes it exclusively) and reads `store_state`: a changed series epoch
    empties the series cache, a changed families version reloads the family registry. A lost
    connection fails the batch (503) and is replaced on the next call.
    """

    def __init__(self, url: str, origin: str, limits: SeriesLimits | None = None) -> None:
        self.url = url
        self.origin = origin
        self.limits = limits
        self.series = SeriesCache()
        self.registry = load_registry([])
        self.epoch = -1
        self.families_version = -1
        self.days: set[int] = set()
        self.turns = Turns(url, self._opened)
        for slot in range(SLOTS):
            self.turns.connection(slot)

    @property
    def conns(self) -> list[psycopg.Connection]:
        """The open write connections."""
        return [conn for conn in self.turns.conns if conn is not None]

    def _opened(self, conn: psycopg.Connection) -> None:
        self.epoch = self.families_version = -1  # read everything again
        with engine_errors(self.url):
            for statement in bounded_waits(self.url, writes=True):
                conn.execute(statement)
            self.days = partitions.days_of(conn)

    def _connection(self) -> psycopg.Connection:
        """The connection for work between batches (the writer runs none while a tail is
        being committed)."""
        self.turns.wait_all()
        return self.turns.connection(0)

    def check(self) -> None:
        """The database answers: StorageError while it is down or unreachable (the writer is
        then unhealthy until a probe write succeeds), so readiness falls without a push."""
        with engine_errors(self.url):
            self._connection().execute("SELECT 1")

    def turn(self) -> AbstractContextManager[None]:
        """Servers commit side by side: rows they both touch are locked per transaction."""
        return contextlib.nullcontext()

    def commit(self, pushes: Sequence[Push]) -> Change | Later:
        copy = True
        for attempt in range(ATTEMPTS):
            try:
                with engine_errors(self.url):
                    return self._commit_once(pushes, copy)
            except DuplicateSamples:
                copy = False  # (next attempt: its samples upserted)
            except StorageError as exc:
                if not isinstance(exc.__cause__, RETRIED) or attempt == ATTEMPTS - 1:
                    raise
            except StaleFamilies:
                pass
            for push in pushes:
                push.refused = None
        raise StorageError("PostgreSQL: families kept changing under the batch")

    def _commit_once(self, pushes: Sequence[Push], copy: bool) -> Change | Later:
        # A small batch goes in pipeline mode: its statements travel together, two round
        # trips in all (the state read, then the rest with COMMIT) instead of eight. A big
        # one COPYs its samples (COPY cannot run in a pipeline): its statements before the
        # COPY travel together, and those after it with COMMIT, on the committer thread for
        # a plain batch (tails.py).
        rows = sum(push.samples for push in pushes)
        small = not copy or rows < COPY_MIN_ROWS
        plain = rows >= OVERLAP_MIN_ROWS and all(push.stale is None and push.group is None
                                                 for push in pushes)
        if small or not plain:
            self.turns.wait_all()
        conn = self.turns.connection(self.turns.slot)
        self.days = partitions.ensure(conn, self.days, pushes)
        registry = self.registry
        try:
            if small:
                with conn.pipeline(), conn.transaction():
                    reloaded, accepted, samples, latest = self._resolve(conn, pushes)
                    registry = self.registry
                    upsert_rows(conn, samples, latest)
                    change = self._finish(conn, pushes, accepted, latest, reloaded)
            else:
                with conn.pipeline():
                    conn.execute(BEGIN)
                    reloaded, accepted, samples, latest = self._resolve(conn, pushes)
                    registry = self.registry
                if samples and not copy_samples(conn, samples):
                    raise DuplicateSamples
                if plain and not (reloaded or registry.pending or self.series.resolved()):
                    return self._hand_over(conn, accepted, latest)
                self.turns.wait_all()
                with conn.pipeline() as pipeline:
                    write_latest(conn, latest, pipeline=pipeline)
                    change = self._finish(conn, pushes, accepted, latest, reloaded)
                    done = conn.execute(COMMIT)
                if done.statusmessage != "COMMIT":
                    raise StorageError(f"PostgreSQL: COMMIT answered {done.statusmessage}")
        except BaseException as exc:
            if not small:
                with contextlib.suppress(psycopg.Error):
                    conn.rollback()
            self.registry.discard()
            self.series.forget_pending()
            if isinstance(exc, StaleFamilies):
                self.families_version = -1  # reload before checking again
            raise
        self.series.adopt()
        if registry.pending:
            self.families_version += 1
        families = registry.adopt()
        return change._replace(families=families or None)

    def _hand_over(self, conn: psycopg.Connection, accepted: Sequence[Push],
                   latest: list[int | float]) -> Later:
        """A plain batch's tail, to commit on the committer thread (tails.py)."""
        self.series.adopt()  # (nothing resolved: the cache only ages)
        newest = newest_per_source(accepted)
        sources = ([s for s, _ in newest], [t for _, t in newest]) if newest else None
        change = Change(cast(list[int], latest[0::3]))
        return self.turns.hand_over(conn, latest, sources,
                                    encode_change(self.origin, change), change)

    def _resolve(self, conn: psycopg.Connection, pushes: Sequence[Push]
                 ) -> tuple[bool, Sequence[Push], list[int | float], list[int | float]]:
        reloaded = self._read_state(conn)
        registry = self.registry
        accepted = checked(pushes, registry)
        if registry.pending:
            row = conn.execute(BUMP_FAMILIES_VERSION).fetchone()
            if row is None or row[0] != self.families_version + 1:
                raise StaleFamilies
        samples, latest = self.series.rows(PostgresSeriesTable(conn), accepted, self.limits)
        if self.limits is not None:
            accepted = [push for push in accepted if push.refused is None]
        return reloaded, accepted, samples, latest

    def _finish(self, conn: psycopg.Connection, pushes: Sequence[Push],
                accepted: Sequence[Push], latest: list[int | float], reloaded: bool) -> Change:
        registry = self.registry
        markers = self.series.markers(PostgresSeriesTable(conn), accepted)
        if markers:
            conn.execute(INSERT_STALE_MARKERS, ([m[0] for m in markers],
                                                [m[1] for m in markers]))
        if accepted:
            newest = newest_per_source(accepted)
            conn.execute(UPSERT_SOURCES, ([s for s, _ in newest], [t for _, t in newest]))
        touched = cast(list[int], latest[0::3])
        group_series = groups.apply_batch(conn.cursor(), GROUPS, self.series, pushes)
        touched += group_series or []
        if registry.pending:
            pending = registry.pending.items()
            conn.execute(UPSERT_FAMILIES, ([n for n, _ in pending],
                                           [m.type for _, m in pending],
                                           [m.help for _, m in pending]))
        change = Change(touched, reloaded, dict(registry.pending) or None,
                        group_series is not None)
        conn.execute(NOTIFY, (CHANNEL, encode_change(self.origin, change)))
        return change

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

    def claim_purge(self, slot: int) -> bool:
        with engine_errors(self.url):
            cursor = self._connection().execute(CLAIM_PURGE_SLOT, (slot, slot))
            return cursor.rowcount == 1

    def purge_chunk(self, cutoff: int) -> tuple[int, bool, Change]:
        """Whole expired days first (one per call), then chunks of the boundary day and of
        the default partition; the finishing call forgets expired series."""
        with engine_errors(self.url):
            conn = self._connection()
            done = upkeep.purge_chunk(conn, self.origin, cutoff)
            self.days = partitions.days_of(conn)
            return done

    def probe(self, now: int) -> None:
        with engine_errors(self.url):
            upkeep.probe(self._connection(), now)

    def expire_groups(self, now: float, default_ttl: float) -> Change | None:
        with engine_errors(self.url):
            return upkeep.expire_groups(self._connection(), self.origin, now, default_ttl)

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
        with engine_errors(self.url):
            return upkeep.settle_deletion(self._connection(), self.origin, ids, start, end)

    def outside_change(self) -> bool:
        """Other servers' commits arrive through the change feed, not here."""
        return False

    def close(self) -> None:
        self.turns.close()

