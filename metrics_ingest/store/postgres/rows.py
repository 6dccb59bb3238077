"""A batch's rows into PostgreSQL: its samples (COPY, or an upsert for a small batch or when
a key repeats) and its series' latest rows (updated in place, upserted for new series)."""

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


def upsert_rows(conn: psycopg.Connection, samples: list[int | float],
                latest: list[int | float]) -> None:
    """The batch's samples and latest rows upserted, without waiting for a result (a small
    batch in a pipeline, or a big one whose COPY met a stored or repeated key)."""
    if not samples:
        return
    # Equal keys: the last wins, as one statement cannot update a row twice.
    rows = dict(zip(zip(samples[0::3], samples[1::3], strict=True), samples[2::3],
                    strict=True))
    keys = list(rows)
    conn.execute(UPSERT_SAMPLES, ([key[0] for key in keys], [key[1] for key in keys],
                                  list(rows.values())))
    write_latest(conn, latest, upsert=True)


def write_latest(conn: psycopg.Connection, latest: list[int | float], upsert: bool = False,
                 pipeline: psycopg.Pipeline | None = None) -> None:
    """The batch's latest rows, in series order (servers updating the same series lock them
    in one order, never a deadlock): updated in place, upserted when some were missing (new
    series) or right away (`upsert`). In `pipeline`, the update's row count is waited for
    (a sync)."""
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


def copy_samples(conn: psycopg.Connection, samples: list[int | float]) -> bool:
    """COPY the rows; False if a key was already stored or came twice in the batch (the
    transaction is then aborted: the batch goes again with `upsert_rows`)."""
    try:
        with conn.cursor().copy(COPY_SAMPLES) as copy:
            copy.set_types(SAMPLE_TYPES)
            write = copy.write_row
            for row in zip(samples[0::3], samples[1::3], samples[2::3], strict=True):
                write(row)
    except errors.UniqueViolation:
        return False
    return True
