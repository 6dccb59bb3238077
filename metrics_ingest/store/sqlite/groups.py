"""Pushgateway-API groups in SQLite: which series a group exports now (PUT, POST, DELETE)."""

from __future__ import annotations

import sqlite3

from metrics_ingest.model import Grouping, Push
from metrics_ingest.store.sqlite.series import SeriesIndex
from metrics_ingest.store.sqlite.sql import (
    DELETE_GROUP,
    DELETE_GROUP_MEMBER,
    FAIL_GROUP,
    HIDE_SERIES,
    INSERT_GROUP_MEMBER,
    PIN_SERIES,
    SELECT_GROUP,
    SELECT_GROUP_MEMBERS,
    UPSERT_GROUP,
)


def record_failure(db: sqlite3.Connection, grouping: Grouping, now: float) -> None:
    """A refused push's time, as push_failure_time_seconds; the group's series stay."""
    db.execute(FAIL_GROUP, (grouping.source, grouping.key, now))


def apply(db: sqlite3.Connection, series: SeriesIndex, push: Push) -> list[int]:
    """A Pushgateway-API push's effect on its group, in the transaction of its samples;
    returns the series it hid or pinned."""
    group = push.group
    assert group is not None
    members = {series.id_of(sample_group.source, sample_group.labels, name):
               group.families[name]
               for sample_group in push.groups for name in sample_group.names}
    return apply_operation(db, group.op, group.grouping.source, group.grouping.key,
                           members, group.pushed_families, push.received_at)


def apply_operation(db: sqlite3.Connection, op: str, source: str, grouping: str,
                     members: dict[int, str], pushed_families: set[str],
                     now: float) -> list[int]:
    """Make a push group's exported series what a PUT, POST or DELETE says (Pushgateway
    semantics); the caller owns the transaction, which also holds the push's samples.

    PUT: the pushed series become the whole group. POST: they replace the group's series of
    the pushed families. DELETE: the group exports nothing. Series that leave a group are
    hidden from /metrics; their stored samples stay until retention. Returns the series hidden
    or pinned.
    """
    if op == "delete":
        row = db.execute(SELECT_GROUP, (source, grouping)).fetchone()
        if row is None:
            return []
        group_id = row[0]
        leaving = db.execute(SELECT_GROUP_MEMBERS, (group_id,)).fetchall()
        db.executemany(HIDE_SERIES, [(series_id,) for series_id, _ in leaving])
        db.executemany(DELETE_GROUP_MEMBER, [(group_id, series_id) for series_id, _ in leaving])
        db.execute(DELETE_GROUP, (group_id,))
        return [series_id for series_id, _ in leaving]
    group_id = db.execute(UPSERT_GROUP, (source, grouping, now)).fetchone()[0]
    old = dict(db.execute(SELECT_GROUP_MEMBERS, (group_id,)).fetchall())
    replaced = {series_id for series_id, family in old.items()
                if op == "put" or family in pushed_families}
    gone = [series_id for series_id in replaced if series_id not in members]
    # Only the difference is written: a job re-pushing the same series changes nothing here.
    added = [(group_id, series_id, family) for series_id, family in members.items()
             if old.get(series_id) != family]
    db.executemany(DELETE_GROUP_MEMBER, [(group_id, series_id) for series_id in gone])
    db.executemany(HIDE_SERIES, [(series_id,) for series_id in gone])
    db.executemany(INSERT_GROUP_MEMBER, added)
    db.executemany(PIN_SERIES, [(series_id,) for _, series_id, _ in added])
    return gone + [series_id for _, series_id, _ in added]
