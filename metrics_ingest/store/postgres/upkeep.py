"""The write session's work between batches that is not a batch: the retention purge's
chunks, the readiness probe, group expiry and settling a deletion, each in transactions of
its own on the connection given (store/postgres/session.py)."""

from __future__ import annotations

import os

import psycopg

from metrics_ingest.model import Change
from metrics_ingest.store import deletion, groups
from metrics_ingest.store.changes import encode_change
from metrics_ingest.store.postgres import partitions
from metrics_ingest.store.postgres.sql import (
    ADVISORY_LOCK,
    CHANNEL,
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
    NOTIFY,
    PARTITION_LOCK,
    PROBE_GROWTH_BYTES,
    SERIES_LOCK,
    WRITE_PROBE,
)

PURGE_CHUNK_ROWS = 5000


def purge_chunk(conn: psycopg.Connection, origin: str, cutoff: int
                ) -> tuple[int, bool, Change]:
    """One step of the purge (WriteSession.purge_chunk): the oldest expired day dropped
    whole, else a chunk of the boundary days and the default partition, else (finishing)
    expired series, groups, markers and sources forgotten. The partitions are read under
    the partition lock, so a purge beside another (the CLI's beside the schedule's, two
    servers') never names one the other dropped."""
    dropped = partitions.drop_oldest(conn, cutoff)
    if dropped is not None:
        return dropped, False, Change([])
    with conn.transaction():
        conn.execute(ADVISORY_LOCK, (PARTITION_LOCK,))
        boundary = [f"samples_d{day}" for day in sorted(partitions.days_of(conn))
                    if day * partitions.DAY < cutoff]
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
        conn.execute(NOTIFY, (CHANNEL, encode_change(origin, Change([], True))))
    return 0, True, Change([], everything=True)


def probe(conn: psycopg.Connection, now: int) -> None:
    """A 256 KiB row committed and deleted again, then the probe row."""
    with conn.transaction():
        conn.execute(GROW_PROBE, (now, os.urandom(PROBE_GROWTH_BYTES)))
    with conn.transaction():
        conn.execute(DELETE_GROW_PROBE)
        conn.execute(WRITE_PROBE, (now,))


def expire_groups(conn: psycopg.Connection, origin: str, now: float, default_ttl: float
                  ) -> Change | None:
    with conn.transaction():
        hidden = groups.expire(conn.cursor(), GROUPS, now, default_ttl)
        if not hidden:
            return None
        change = Change(hidden, groups=True)
        conn.execute(NOTIFY, (CHANNEL, encode_change(origin, change)))
    return change


def settle_deletion(conn: psycopg.Connection, origin: str, ids: list[int], start: int,
                    end: int) -> tuple[int, Change]:
    """Series are forgotten under the series lock held exclusively, as the purge does: no
    writer holds an id of one meanwhile."""
    with conn.transaction():
        conn.execute(ADVISORY_LOCK, (SERIES_LOCK,))
        touched, forgotten = deletion.settle(conn.cursor(), DELETION, ids, start, end)
        change = Change(touched, groups=bool(forgotten))
        conn.execute(NOTIFY, (CHANNEL, encode_change(origin, change)))
    return forgotten, change
