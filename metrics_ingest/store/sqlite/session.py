"""The SQLite write session: every write made through the one write connection (batches,
push groups, purge chunks, probes). Confined to the writer's thread."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import cast

import orjson

from metrics_ingest.config import Synchronous
from metrics_ingest.model import Change, OverBudget, Push
from metrics_ingest.selectors import Selector
from metrics_ingest.store import StorageError, StoreLost, deletion, groups
from metrics_ingest.store.batch import (
    SELECT_FAMILIES,
    checked,
    load_registry,
    newest_per_source,
    oldest_sample,
)
from metrics_ingest.store.budgets import SeriesLimits
from metrics_ingest.store.preparing import OverBudgetPushes, prepare_slice
from metrics_ingest.store.sample_arrays import Plan, Slice
from metrics_ingest.store.series_cache import SeriesCache
from metrics_ingest.store.sqlite import blocks, sql
from metrics_ingest.store.sqlite.label_index import index_slice
from metrics_ingest.store.sqlite.series import SQLiteSeriesTable
from metrics_ingest.store.sqlite.turns import SharedFile
from metrics_ingest.store.sqlite.writes import (
    PURGE_CHUNK_ROWS,
    connect,
    engine_errors,
    file_identity,
    immediate_transaction,
    insert_rows,
    purge_chunk,
    purge_expired_series,
    write_probe,
)


class SQLiteWriteSession:
    """The store's WriteSession over one sqlite3 connection (see store.WriteSession).

    Series ids come from the series cache over the table. Another connection's commit is
    noticed through PRAGMA data_version; `store_state` then says whether series were
    deleted (the cache is emptied) or families changed (the registry is reloaded).

    Shared (`origin` given: one of `serve --workers N` on the file): every commit also
    leaves a change notice in `changes` for the other workers, and their commits are news
    to /metrics through those notices, not through `outside_change`, and with
    `synchronous=full` a commit's fsync comes after its turn (turns.py). Alone (origin None):
    any outside commit (`metrics-ingest purge`, `db query`, the Worker's manual cleanup
    with sqlite3) makes /metrics read everything again.
    """

    def __init__(self, db_path: Path, synchronous: Synchronous,
                 origin: str | None = None, limits: SeriesLimits | None = None) -> None:
        self.db_path = db_path
        self.limits = limits
        self.shared = None if origin is None else SharedFile(db_path, origin, synchronous)
        with engine_errors():
            self.db = connect(db_path, synchronous if self.shared is None
                              else self.shared.sqlite_synchronous)
            self.registry = load_registry(self.db.execute(SELECT_FAMILIES))
            self.identity = file_identity(db_path)
        self.series = SeriesCache()
        self.table = SQLiteSeriesTable(self.db)
        self.data_version = -1
        self.state: tuple[int, int] | None = None
        self.blocks_frozen = 0  # (store_state's, as of the last refresh or own change)

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
        """Bring the cache and the registry up to date if another connection committed
        since; True if one did."""
        version = int(self.db.execute(sql.SELECT_DATA_VERSION).fetchone()[0])
        if version == self.data_version:
            return False
        self.data_version = version
        epoch, families, self.blocks_frozen = self.db.execute(sql.SELECT_STATE).fetchone()
        if self.state is None or epoch != self.state[0]:
            self.series.clear()
        if self.state is None or families != self.state[1]:
            self.registry = load_registry(self.db.execute(SELECT_FAMILIES))
        self.state = (epoch, families)
        return True

    def _notify(self, change: Change) -> None:
        """Shared: in the open transaction, the change notice for the other workers."""
        if self.shared is not None:
            self.shared.notify(self.db, change)

    def _sync(self) -> None:
        """Shared: end the turn, then (`full`) fsync the WAL, before any answer (turns.py);
        alone, COMMIT itself was as durable as asked."""
        if self.shared is not None:
            self.shared.synced()

    def turn(self) -> AbstractContextManager[None]:
        """Shared: the turn to commit among the workers (turns.py); alone, nothing to wait
        for."""
        return self.shared.turns.turn() if self.shared else contextlib.nullcontext()

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
            samples, latest = series.rows(self.table, accepted, self.limits)
            if self.limits is not None:
                accepted = [push for push in accepted if push.refused is None]
            insert_rows(db, samples, latest)
            markers = series.markers(self.table, accepted)
            if markers:
                db.executemany(sql.INSERT_STALE_MARKER, markers)
            if accepted:
                db.executemany(sql.UPSERT_SOURCE, newest_per_source(accepted))
                oldest = oldest_sample(accepted)
                if oldest is not None and oldest < self.blocks_frozen:
                    blocks.note_late(db, oldest)  # a push below what the blocks hold
            touched = cast(list[int], latest[0::3])  # (series_id, timestamp, value), flat
            group_series = groups.apply_batch(db, sql.GROUPS, series, pushes)
            touched += group_series or []
            if registry.pending:
                db.executemany(sql.UPSERT_FAMILY, [(name, meta.type, meta.help)
                                               for name, meta in registry.pending.items()])
            # Alone, another connection's commit means read everything again; shared, the
            # other workers' notices say what they changed.
            change = Change(touched, reloaded and self.shared is None,
                            dict(registry.pending) or None, group_series is not None)
            self._notify(change)
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
        self._sync()  # (committed either way: a failed sync answers 503, the cache stays)
        return change._replace(families=families or None)

    def prepare(self, push: Push) -> bool:
        with self.turn():  # (shared: wait for the flock, not in SQLite's busy handler)
            return self._prepare(push)

    def _prepare(self, push: Push) -> bool:
        db = self.db
        try:
            db.execute("BEGIN IMMEDIATE")
            self._refresh()
            done, created = prepare_slice(self.series, self.table, push, self.limits)
            db.execute("COMMIT")
        except BaseException as exc:
            self.series.forget_pending()
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            if isinstance(exc, OverBudgetPushes) and isinstance(push.refused, OverBudget):
                raise push.refused from None
            if isinstance(exc, sqlite3.Error):
                raise StorageError(str(exc)) from exc
            raise
        if push.prepared is not None:
            push.prepared.created += created
        return done

    def unprepare(self, created: list[int]) -> None:
        ids = created
        if not ids:
            return
        with engine_errors(), self.turn():
            with immediate_transaction(self.db):
                self._refresh()
                gone = self.db.execute(sql.DELETE_UNUSED_SERIES, (orjson.dumps(ids),)).rowcount
            if gone:
                self.series.clear()

    def claim_purge(self, slot: int) -> bool:
        with engine_errors(), immediate_transaction(self.db):
            return self.db.execute(sql.CLAIM_PURGE_SLOT, (slot, slot)).rowcount == 1

    def purge_chunk(self, cutoff: int) -> tuple[int, bool, Change]:
        db = self.db
        self.check()
        with engine_errors():
            with immediate_transaction(db):
                self._refresh()
                blocks_gone = blocks.purge(db, cutoff, PURGE_CHUNK_ROWS)  # (first: see there)
                deleted, finished = purge_chunk(db, cutoff, PURGE_CHUNK_ROWS)
                finished = finished and blocks_gone
                forgotten = purge_expired_series(db, cutoff) if finished else 0
                if finished:
                    self._notify(Change([], everything=True))
            if forgotten:
                self.series.clear()
        return deleted, finished, Change([], everything=True)

    def expire_groups(self, now: float, default_ttl: float) -> Change | None:
        with engine_errors(), immediate_transaction(self.db):
            hidden = groups.expire(self.db, sql.GROUPS, now, default_ttl)
            if not hidden:
                return None
            change = Change(hidden, groups=True)
            self._notify(change)
        return change

    def write_blocks(self, plan: Plan, part: Slice | None) -> bool:
        with engine_errors(), self.turn(), immediate_transaction(self.db):
            self._refresh()
            done = (blocks.begin(self.db, plan) if part is None
                    else blocks.write_slice(self.db, plan, part))
            self.blocks_frozen = int(self.db.execute(blocks.SELECT_STATE).fetchone()[3])
            return done

    def index_labels(self) -> bool:
        with engine_errors(), self.turn():
            return index_slice(self.db)

    def deletion_ids(self, selector: Selector) -> list[int]:
        with engine_errors():
            return deletion.matching_series(self.db, sql.DELETION, selector)

    def deletion_windows(self, start: int, end: int) -> list[tuple[int, int]]:
        with engine_errors():
            return deletion.windows(self.db, sql.DELETION, start, end)

    def delete_window(self, ids: list[int], start: int, end: int) -> int:
        self.check()
        with engine_errors(), immediate_transaction(self.db):
            self._refresh()
            if start < self.blocks_frozen:
                blocks.note_late(self.db, start)  # (its window goes back to the samples)
            return deletion.delete_window(self.db, sql.DELETION, ids, start, end)

    def settle_deletion(self, ids: list[int], start: int, end: int) -> tuple[int, Change]:
        self.check()
        with engine_errors():
            with immediate_transaction(self.db):
                self._refresh()
                touched, forgotten = deletion.settle(self.db, sql.DELETION, ids, start, end)
                change = Change(touched, groups=bool(forgotten))
                self._notify(change)
            if forgotten:
                self.series.clear()
        self._sync()
        return forgotten, change

    def probe(self, now: int) -> None:
        with engine_errors():
            write_probe(self.db, now)
        self.check()

    def outside_change(self) -> bool:
        if self.shared is not None:
            return False  # the other workers' notices say what changed
        with engine_errors():
            if not self._refresh():
                return False
            # Another process may have deleted a source's newest samples (the Worker's
            # manual cleanup through the view): count the sources again.
            with immediate_transaction(self.db):
                self.db.execute(sql.DELETE_SOURCES)
                self.db.execute(sql.RECOUNT_SOURCES)
            return True

    def close(self) -> None:
        """Checkpoint the WAL into the file and truncate it (waiting at most a second for
        another worker's readers or commit; what stays in the WAL is as safe there), so a
        stopped server's database is the one file; then close."""
        with contextlib.suppress(sqlite3.Error):
            self.db.execute("PRAGMA busy_timeout=1000")
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        self.db.close()
        if self.shared is not None:
            self.shared.close()
