"""A batch's rows into PostgreSQL: its samples (COPY, or an upsert when a key repeats) and
its series' latest rows (updated in place, upserted only for new series)."""

from __future__ import annotations

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
    if pipelined or not copy_samples(conn, samples):
        # Equal keys: the last wins, as one statement cannot update a row twice.
        rows = dict(zip(zip(samples[0::3], samples[1::3], strict=True), samples[2::3],
                        strict=True))
        keys = list(rows)
        conn.execute(UPSERT_SAMPLES, ([key[0] for key in keys], [key[1] for key in keys],
                                      list(rows.values())))
    newest = sorted(zip(latest[0::3], latest[1::3], latest[2::3], strict=True))
    columns = ([row[0] for row in newest], [row[1] for row in newest],
               [row[2] for row in newest])
    if pipelined or conn.execute(UPDATE_LATEST, columns).rowcount < len(newest):
        conn.execute(UPSERT_LATEST, columns)


def copy_samples(conn: psycopg.Connection, samples: list[int | float]) -> bool:
    """COPY the rows in a savepoint; False (nothing written) if a key was already stored
    or came twice in the batch."""
    try:
        with conn.transaction(), conn.cursor().copy(COPY_SAMPLES) as copy:
            copy.set_types(SAMPLE_TYPES)
            write = copy.write_row
            for row in zip(samples[0::3], samples[1::3], samples[2::3], strict=True):
                write(row)
    except errors.UniqueViolation:
        return False
    return True
