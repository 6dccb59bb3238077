"""Day partitions of `samples`: created ahead and on demand by the writers, dropped whole by
the retention purge. A day's partition is `samples_d<day>` (day = Unix seconds // 86400)
and holds [day * 86400, (day + 1) * 86400). Every day a push may write (the timestamp
bounds: a year back, an hour ahead) gets one before its first sample is written;
`samples_default` only catches a row written while another server attaches its day, and
the purge deletes from it in chunks."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

import psycopg
from psycopg.sql import SQL, Identifier, Literal

from metrics_ingest.model import PAST_LIMIT_SECONDS, Push
from metrics_ingest.store.postgres.sql import (
    ADVISORY_LOCK,
    DELETE_PARTITION_CHUNK,
    PARTITION_LOCK,
    SELECT_PARTITIONS,
)

DAY = 86400
PAST_DAYS = PAST_LIMIT_SECONDS // DAY + 1  # the oldest day a push may write to
NAME_RE = re.compile(r"samples_d(\d+)")


def days_of(conn: psycopg.Connection) -> set[int]:
    """The days that have a partition now."""
    days = set()
    for name, _bound in conn.execute(SELECT_PARTITIONS):
        match = NAME_RE.fullmatch(name)
        if match:
            days.add(int(match.group(1)))
    return days


def ensure(conn: psycopg.Connection, days: set[int], pushes: Sequence[Push]) -> set[int]:
    """Partitions for the batch's days (and today's and tomorrow's) before its transaction,
    where `days` (those known to have one) lacks them; returns the days known after."""
    today = int(time.time()) // DAY
    wanted = {today, today + 1}
    wanted.update(group.timestamp // DAY for push in pushes for group in push.groups)
    wanted = {day for day in wanted if today - PAST_DAYS <= day <= today + 1}
    return days if wanted <= days else create(conn, wanted)


def create(conn: psycopg.Connection, wanted: set[int]) -> set[int]:
    """Make partitions for the wanted days that have none, in one transaction of their own
    under the partition lock (servers creating the same day wait for each other); returns
    every day with a partition after.

    Rows of those days already in `samples_default` move into the new partition before it is
    attached. Attaching takes a SHARE UPDATE EXCLUSIVE lock on `samples`, which concurrent
    inserts do not wait for.
    """
    with conn.transaction():
        conn.execute(ADVISORY_LOCK, (PARTITION_LOCK,))
        existing = days_of(conn)
        missing = sorted(wanted - existing)
        if missing:
            conn.execute("LOCK TABLE samples_default IN SHARE ROW EXCLUSIVE MODE")
        for day in missing:
            name, low, high = partition(day), Literal(day * DAY), Literal((day + 1) * DAY)
            conn.execute(SQL("CREATE TABLE {} (LIKE samples INCLUDING ALL)").format(name))
            conn.execute(SQL("WITH moved AS (DELETE FROM samples_default WHERE timestamp >= {}"
                             " AND timestamp < {} RETURNING *) INSERT INTO {} SELECT * FROM moved"
                             ).format(low, high, name))
            conn.execute(SQL("ALTER TABLE samples ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})"
                             ).format(name, low, high))
        return existing | set(missing)


def drop_oldest(conn: psycopg.Connection, cutoff: int) -> int | None:
    """Drop the oldest partition wholly before `cutoff`, keeping pinned series' newest
    samples (they move to `samples_default`); returns the samples dropped, or None when no
    partition is wholly expired. One transaction."""
    with conn.transaction():
        conn.execute(ADVISORY_LOCK, (PARTITION_LOCK,))
        expired = sorted(day for day in days_of(conn) if (day + 1) * DAY <= cutoff)
        if not expired:
            return None
        name = partition(expired[0])
        row = conn.execute(SQL("SELECT count(*) FROM {}").format(name)).fetchone()
        total = int(row[0]) if row else 0
        conn.execute(SQL("ALTER TABLE samples DETACH PARTITION {}").format(name))
        kept = conn.execute(SQL(
            "INSERT INTO samples SELECT x.* FROM {} x JOIN latest l ON l.series_id = x.series_id"
            " AND l.timestamp = x.timestamp AND l.pinned = 1").format(name))
        conn.execute(SQL("DROP TABLE {}").format(name))
        return total - max(kept.rowcount, 0)


def delete_chunk(conn: psycopg.Connection, table: str, cutoff: int, chunk: int) -> int:
    """Delete up to `chunk` expired, unpinned samples from one partition (the boundary day
    or the default); the caller owns the transaction."""
    cursor = conn.execute(SQL(DELETE_PARTITION_CHUNK).format(Identifier(table)),
                          (cutoff, chunk))
    return max(cursor.rowcount, 0)


def partition(day: int) -> Identifier:
    return Identifier(f"samples_d{int(day)}")
