"""Packed sample blocks (sql/0011): every series' samples of a window of BLOCK_SECONDS in
one row, written behind the writer so that a range query reads a row per series and window
instead of picking its series out of every series' samples by time.

One contract (`store_state.blocks_upto`: every sample below it is in the blocks exactly as in
`samples`, and nothing else below it is), kept by three parts:
- the builder (`SQLiteBlockBuilder`, on a connection of its own, off the writer) plans the
  next step: a window up to GRACE_SECONDS ago (the open window too, again as it fills);
- the writer begins the plan by freezing the samples below its end (`blocks_frozen_to`),
  then the builder reads the window from one snapshot, sorted by series, and the writer
  commits it a slice at a time (`write_slice`), each only while `blocks_upto` and
  `blocks_epoch` are the plan's; the last one moves `blocks_upto` to the plan's end;
- every change below `blocks_frozen_to` lowers `blocks_upto` to its window and bumps
  the epoch: a late push in the writer's commit and delete_series (`note_late`), the
  Worker's cleanup through the view in sql/0011's trigger; a forgotten series' blocks
  are deleted with it (a trigger). Readers take blocks below `blocks_upto` (clipped to
  it) and samples from it on.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Generator
from itertools import pairwise
from pathlib import Path

import numpy as np
import orjson

from metrics_ingest.store import StorageError, WriteSession
from metrics_ingest.store.sample_arrays import (
    GRACE_SECONDS,
    BlockBuilder,
    Floats,
    Ints,
    Plan,
    SampleArrays,
    Slice,
)

BLOCK_SECONDS = 600  # as in sql/0011's trigger
SLICE_SAMPLES = 20_000  # samples a slice commits (~3 ms of the writer's time)
OPEN_STEP_SECONDS = 60  # the open window is written again at most this often
OPEN_MAX_SAMPLES = 2_000_000  # and only while a window holds fewer samples (it is read whole)
FETCH_ROWS = 8192
PURGE_BLOCKS_PER_ROW = 16  # a block row costs a purge ~16 sample rows (4.6 us against ~0.3)
NO_ID = 1 << 62

SELECT_STATE = (
    "SELECT blocks_upto, blocks_epoch, blocks_kept_from, blocks_frozen_to FROM store_state"
)
SELECT_FIRST = "SELECT min(timestamp) FROM samples WHERE timestamp >= ?"
SELECT_WINDOW = (
    "SELECT series_id, timestamp, value FROM samples WHERE timestamp >= ? AND timestamp < ?"
    " ORDER BY series_id, timestamp"
)
ANY_SAMPLE_BETWEEN = "SELECT 1 FROM samples WHERE timestamp >= ? AND timestamp < ? LIMIT 1"
DELETE_PASSED = "DELETE FROM sample_blocks WHERE start >= ? AND start < ?"
DELETE_SLICE = "DELETE FROM sample_blocks WHERE start = ? AND series_id > ? AND series_id <= ?"
INSERT_BLOCK = "INSERT OR REPLACE INTO sample_blocks VALUES (?, ?, ?, ?, ?)"
SET_UPTO = (
    "UPDATE store_state SET blocks_upto = ?1, blocks_frozen_to = max(blocks_frozen_to, ?1)"
)
FREEZE = "UPDATE store_state SET blocks_frozen_to = max(blocks_frozen_to, ?)"
NOTE_LATE = (
    "UPDATE store_state SET blocks_upto = min(blocks_upto, ?), blocks_epoch = blocks_epoch + 1"
)
SET_KEPT_FROM = "UPDATE store_state SET blocks_kept_from = max(blocks_kept_from, ?)"
# The oldest `chunk` blocks of windows ending by the cutoff, by the index on start.
DELETE_PURGED = (
    "DELETE FROM sample_blocks WHERE (start, series_id) IN (SELECT start, series_id"
    " FROM sample_blocks WHERE start <= ?1 ORDER BY start, series_id LIMIT ?2)"
)
SELECT_BLOCKS = (
    "SELECT series_id, start, count, times, vals FROM sample_blocks"
    " WHERE series_id IN (SELECT value FROM json_each(?1)) AND start > ?2 AND start < ?3"
)


def window_of(timestamp: int) -> int:
    return timestamp - timestamp % BLOCK_SECONDS


class SQLiteBlockBuilder:
    """Reads closed windows for the blocks, from a read-only connection of its own; its
    calls run on a worker thread, one at a time."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        try:
            self.db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True,
                                      isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA busy_timeout=5000")
        except sqlite3.Error as exc:
            raise StorageError(str(exc)) from exc
        self.window_samples = 0  # in the last window read

    def epoch(self) -> int:
        return int(self._one(SELECT_STATE)[1])

    def plan(self, now: int, keep_from: int = 0) -> Plan | None:
        """The next step, or None while the blocks are as far on as they go for now;
        windows wholly older than `keep_from` (the retention) are passed over: the purge
        is about to delete their samples, and queries do not see them."""
        upto, epoch, _, _ = self._one(SELECT_STATE)
        if upto < window_of(keep_from):
            return Plan(upto, epoch, window_of(keep_from), expired=True)
        ready = now - GRACE_SECONDS  # samples before it are taken as final
        if ready - upto < OPEN_STEP_SECONDS and window_of(ready) == window_of(upto):
            return None
        first = self._one(SELECT_FIRST, (upto,))[0]
        if first is None or first >= ready:
            return Plan(upto, epoch, ready)
        if first > upto:
            return Plan(upto, epoch, first)
        window = window_of(upto)
        end = min(window + BLOCK_SECONDS, ready)
        if end < window + BLOCK_SECONDS and self.window_samples > OPEN_MAX_SAMPLES:
            return None  # too big to write twice: it waits until it closes
        return Plan(upto, epoch, end, window)

    def slices(self, plan: Plan) -> Generator[Slice, None, None]:
        """The window's blocks from one snapshot, slice by slice in series order; the last
        slice has `high` None."""
        db = self.db
        try:
            assert plan.window is not None
            start = plan.window
            db.execute("BEGIN")
            cursor = db.execute(SELECT_WINDOW, (start, plan.end))
            low = 0
            self.window_samples = 0
            held: list[tuple[Ints, Floats]] = []
            ids_held: list[Ints] = []
            while rows := cursor.fetchmany(FETCH_ROWS):
                self.window_samples += len(rows)
                ids_held.append(np.fromiter((r[0] for r in rows), np.int64, len(rows)))
                held.append((np.fromiter((r[1] for r in rows), np.int64, len(rows)),
                             np.fromiter((r[2] for r in rows), np.float64, len(rows))))
                if sum(len(ids) for ids in ids_held) >= SLICE_SAMPLES:
                    ids, times, values = gathered(ids_held, held)
                    cut = int(np.searchsorted(ids, ids[-1], "left"))  # the last id may go on
                    if cut == 0:
                        ids_held, held = [ids], [(times, values)]
                        continue
                    high = int(ids[cut - 1])
                    yield Slice(low, high, packed(start, ids[:cut], times[:cut],
                                                  values[:cut]))
                    low = high
                    ids_held, held = [ids[cut:]], [(times[cut:], values[cut:])]
            if ids_held:
                ids, times, values = gathered(ids_held, held)
                yield Slice(low, None, packed(start, ids, times, values))
            else:
                yield Slice(low, None, [])
        except sqlite3.Error as exc:
            raise StorageError(str(exc)) from exc
        finally:
            if db.in_transaction:
                db.execute("ROLLBACK")

    def settle(self) -> None:
        """Copy the WAL's pages into the file, waiting for no one (a passive checkpoint, on
        a connection of its own). SQLite checkpoints at a commit, but not past a reader's
        snapshot, and the builder reads each window in one while the writer commits its
        slices: after the last, no commit comes to finish the job, and until one does every
        reader looks each page up in the WAL and reads it there instead of in place. W9's
        instant query with a 93 MB WAL left behind: 92 ms, 72 ms once checkpointed."""
        try:
            conn = sqlite3.connect(self.db_path, isolation_level=None)
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise StorageError(str(exc)) from exc

    def _one(self, sql: str, params: tuple[object, ...] = ()) -> tuple[int, ...]:
        try:
            return tuple(self.db.execute(sql, params).fetchone())
        except sqlite3.Error as exc:
            raise StorageError(str(exc)) from exc

    def close(self) -> None:
        self.db.close()


def gathered(ids_held: list[Ints], held: list[tuple[Ints, Floats]]
             ) -> tuple[Ints, Ints, Floats]:
    return (np.concatenate(ids_held), np.concatenate([times for times, _ in held]),
            np.concatenate([values for _, values in held]))


def packed(start: int, ids: Ints, times: Ints, values: Floats
           ) -> list[tuple[int, int, int, bytes, bytes]]:
    """One block row per series of (ids, times, values), sorted by series then time."""
    if not len(ids):
        return []
    bounds = [0, *(np.flatnonzero(np.diff(ids)) + 1).tolist(), len(ids)]
    offsets = (times - start).astype("<i4")
    floats = values.astype("<f8")
    return [(int(ids[a]), start, b - a, offsets[a:b].tobytes(), floats[a:b].tobytes())
            for a, b in pairwise(bounds)]


def still(db: sqlite3.Connection, plan: Plan) -> bool:
    upto, epoch, _, _ = db.execute(SELECT_STATE).fetchone()
    return bool(upto == plan.upto and epoch == plan.epoch)


def begin(db: sqlite3.Connection, plan: Plan) -> bool:
    """In the caller's transaction: a stretch without samples passed over, or a window's
    samples below the plan's end frozen before they are read. False: the plan is stale."""
    if not still(db, plan):
        return False
    if plan.window is not None:
        db.execute(FREEZE, (plan.end,))
        return True
    if not plan.expired and db.execute(
            ANY_SAMPLE_BETWEEN, (plan.upto, plan.end)).fetchone() is not None:
        return False
    db.execute(DELETE_PASSED, (plan.upto, plan.end))  # (rows left there since deleted)
    db.execute(SET_UPTO, (plan.end,))
    return True


def write_slice(db: sqlite3.Connection, plan: Plan, part: Slice) -> bool:
    """In the caller's transaction: the slice's blocks, replacing what its id range held,
    while the plan holds; the last slice moves blocks_upto to the plan's end. False:
    refused (samples changed since they were frozen)."""
    if not still(db, plan):
        return False
    db.execute(DELETE_SLICE, (plan.window, part.low, NO_ID if part.high is None else part.high))
    db.executemany(INSERT_BLOCK, part.rows)
    if part.high is None:
        db.execute(SET_UPTO, (plan.end,))
    return True


def note_late(db: sqlite3.Connection, oldest: int) -> None:
    """In the caller's transaction: samples from `oldest` on, below blocks_frozen_to, are
    being written or deleted."""
    db.execute(NOTE_LATE, (window_of(oldest),))


def purge(db: sqlite3.Connection, cutoff: int, chunk: int) -> bool:
    """In the purge chunk's transaction: samples below `cutoff` are going (readers ignore
    them in the blocks from now), and blocks of windows ending by then go, as many as cost
    about what `chunk` sample rows cost; True once no such block is left."""
    db.execute(SET_KEPT_FROM, (cutoff,))
    rows = max(1, chunk // PURGE_BLOCKS_PER_ROW)
    return db.execute(DELETE_PURGED, (cutoff - BLOCK_SECONDS, rows)).rowcount < rows


def read_blocks(db: sqlite3.Connection, wanted: list[int], start: int, end: int, upto: int,
                kept_from: int) -> SampleArrays | None:
    """The blocks' samples of these series in [start, end], below `upto`, as arrays keyed
    from `start`, each series in time order (blocks of a series come window by window)."""
    rows = db.execute(SELECT_BLOCKS, (orjson.dumps(wanted), start - BLOCK_SECONDS,
                                      min(upto, end + 1))).fetchall()
    if not rows:
        return None
    counts = np.fromiter((row[2] for row in rows), np.int64, len(rows))
    times = np.frombuffer(b"".join([row[3] for row in rows]), "<i4").astype(np.int64)
    times += np.repeat(np.fromiter((row[1] for row in rows), np.int64, len(rows)), counts)
    ids = np.repeat(np.fromiter((row[0] for row in rows), np.int64, len(rows)), counts)
    values = np.frombuffer(b"".join([row[4] for row in rows]), "<f8").astype(np.float64)
    keep = (times >= max(start, kept_from)) & (times <= min(end, upto - 1))
    if not keep.all():
        ids, times, values = ids[keep], times[keep], values[keep]
    return (ids << 32) + (times - start), values


def build_closed(builder: BlockBuilder, session: WriteSession, now: int, keep_from: int = 0
                 ) -> int:
    """The blocks made as far as they go at `now`, at once, in the calling thread (the
    server's upkeep does it behind the writer; this is for tests and offline tools).
    Returns the windows written; raises StorageError if the samples change meanwhile."""
    windows = 0
    while (plan := builder.plan(now, keep_from)) is not None:
        done = session.write_blocks(plan, None)
        if done and plan.window is not None:
            done = all(session.write_blocks(plan, part) for part in builder.slices(plan))
            windows += 1
        if not done:
            raise StorageError("samples changed while their blocks were written")
    return windows
