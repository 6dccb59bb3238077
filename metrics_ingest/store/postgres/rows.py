"""A batch's rows into PostgreSQL: its samples (COPY, or an upsert when a key repeats) and
its series' latest rows (updated in place, upserted only for new series)."""

from __future__ import annotations

import contextlib

import psycopg
from psycopg import errors

from metrics_ingest.store.postgres.sql import (
    COPY_SAMPLES,
    UPDATE_LATEST,
    UPSERT_LATEST,
    UPSERT_SAMPLES,
)

SAMPLE_TYPES = ["int8", "int8", "float8"]


def write_rows(conn: psycopg.Connection, samples: list[int | float],
               latest: list[int | float], pipelined: bool) -> None:
    """The batch's samples and latest rows (in series order: servers updating the same
    series lock them in one order, never a deadlock). A pipelined (small) batch upserts
    both without waiting for a result; a big one COPYs its samples and updates latest rows
    in place, upserting only when some were missing."""
    if not samples:
        return
    if pipelined or not copy_samples(conn, samples, savepoint=True):
        # Equal keys: the last wins, as one statement cannot update a row twice.
        rows = dict(zip(zip(samples[0::3], samples[1::3], strict=True), samples[2::3],
                        strict=True))
        keys = list(rows)
        conn.execute(UPSERT_SAMPLES, ([key[0] for key in keys], [key[1] for key in keys],
                                      list(rows.values())))
    write_latest(conn, latest, pipelined)


def write_latest(conn: psycopg.Connection, latest: list[int | float], upsert: bool = False,
                 pipeline: psycopg.Pipeline | None = None) -> None:
    """The batch's latest rows, in series order: updated in place, upserted when some were
    missing (new series) or right away (`upsert`). In `pipeline`, the update's row count is
    waited for (a sync)."""
    newest = sorted(zip(latest[0::3], latest[1::3], latest[2::3], strict=True))
    columns = ([row[0] for row in newest], [row[1] for row in newest],
               [row[2] for row in newest])
    if upsert:
        conn.execute(UPSERT_LATEST, columns)
        return
    cursor = conn.execute(UPDATE_LATEST, columns)
    if pipeline is not None:
        pipeline.sync()
    if cursor.rowcount < len(newest):
        conn.execute(UPSERT_LATEST, columns)


def copy_samples(conn: psycopg.Connection, samples: list[int | float],
                 savepoint: bool = False) -> bool:
    """COPY the rows (in a savepoint, with `savepoint`); False if a key was already stored
    or came twice in the batch (nothing written; without a savepoint, the transaction is
    aborted)."""
    try:
        with (conn.transaction() if savepoint else contextlib.nullcontext(),
              conn.cursor().copy(COPY_SAMPLES) as copy):
            copy.set_types(SAMPLE_TYPES)
            write = copy.write_row
            for row in zip(samples[0::3], samples[1::3], samples[2::3], strict=True):
                write(row)
    except errors.UniqueViolation:
        return False
    return True
