"""Pushgateway-API groups: which series a group exports now (PUT, POST, DELETE), for both
engines; each engine supplies its statements (`GroupStatements`) and a DB-API connection or
cursor inside its write transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple, Protocol

from metrics_ingest.model import Grouping, Push
from metrics_ingest.store.series_cache import SeriesCache


class Runner(Protocol):
    """What the group rules need of a connection: sqlite3's Connection, psycopg's Cursor."""

    def execute(self, statement: Any, params: Any = ..., /) -> Any: ...

    def executemany(self, statement: Any, params: Iterable[Sequence[Any]], /) -> Any: ...


class GroupStatements(NamedTuple):
    """One engine's SQL for the group rules, parameters in the order given here."""

    upsert_group: str  # (source, grouping, pushed_at, ttl) RETURNING id
    select_group: str  # (source, grouping) -> id
    select_members: str  # (group_id,) -> (series_id, family)
    delete_member: str  # (group_id, series_id)
    insert_member: str  # (group_id, series_id, family), replacing
    delete_group: str  # (id,)
    hide_series: str  # (series_id,)
    pin_series: str  # (series_id,)
    fail_group: str  # (source, grouping, failed_at)
    select_expired: str  # (default ttl, default ttl, now) -> (id,) of groups past their TTL
    expire_series: str  # (series_id,): hidden for good, forgotten by the next purge


def record_failure(db: Runner, sql: GroupStatements, grouping: Grouping, now: float) -> None:
    """A refused push's time, as push_failure_time_seconds; the group's series stay."""
    db.execute(sql.fail_group, (grouping.source, grouping.key, now))


def apply_batch(db: Runner, sql: GroupStatements, series: SeriesCache,
                pushes: Sequence[Push]) -> list[int] | None:
    """Every Pushgateway-API push of a batch, in its transaction: a refused one (or a failed
    request) records its failure time, the others apply; returns the series hidden or pinned,
    None when the batch holds no group push."""
    touched: list[int] | None = None
    for push in pushes:
        group = push.group
        if group is None:
            continue
        touched = touched or []
        if push.refused is not None or group.op == "fail":
            record_failure(db, sql, group.grouping, push.received_at)
        else:
            touched += apply(db, sql, series, push)
    return touched


def apply(db: Runner, sql: GroupStatements, series: SeriesCache, push: Push) -> list[int]:
    """A Pushgateway-API push's effect on its group, in the transaction of its samples;
    returns the series it hid or pinned."""
    group = push.group
    assert group is not None
    members = {series.id_of(sample_group.source, sample_group.labels, name):
               group.families[name]
               for sample_group in push.groups for name in sample_group.names}
    return apply_operation(db, sql, group.op, group.grouping.source, group.grouping.key,
                           members, group.pushed_families, push.received_at, group.ttl)


def apply_operation(db: Runner, sql: GroupStatements, op: str, source: str, grouping: str,
                     members: dict[int, str], pushed_families: set[str],
                     now: float, ttl: float | None = None) -> list[int]:
    """Make a push group's exported series what a PUT, POST or DELETE says (Pushgateway
    semantics); the caller owns the transaction, which also holds the push's samples.

    PUT: the pushed series become the whole group. POST: they replace the group's series of
    the pushed families. DELETE: the group exports nothing. Series that leave a group are
    hidden from /metrics; their stored samples stay until retention. Returns the series hidden
    or pinned.
    """
    if op == "delete":
        row = db.execute(sql.select_group, (source, grouping)).fetchone()
        if row is None:
            return []
        group_id = row[0]
        leaving = db.execute(sql.select_members, (group_id,)).fetchall()
        db.executemany(sql.hide_series, [(series_id,) for series_id, _ in leaving])
        db.executemany(sql.delete_member, [(group_id, series_id) for series_id, _ in leaving])
        db.execute(sql.delete_group, (group_id,))
        return [series_id for series_id, _ in leaving]
    group_id = db.execute(sql.upsert_group, (source, grouping, now, ttl)).fetchone()[0]
    old = dict(db.execute(sql.select_members, (group_id,)).fetchall())
    replaced = {series_id for series_id, family in old.items()
                if op == "put" or family in pushed_families}
    gone = [series_id for series_id in replaced if series_id not in members]
    # Only the difference is written: a job re-pushing the same series changes nothing here.
    added = [(group_id, series_id, family) for series_id, family in members.items()
             if old.get(series_id) != family]
    db.executemany(sql.delete_member, [(group_id, series_id) for series_id in gone])
    db.executemany(sql.hide_series, [(series_id,) for series_id in gone])
    db.executemany(sql.insert_member, added)
    db.executemany(sql.pin_series, [(series_id,) for _, series_id, _ in added])
    return gone + [series_id for _, series_id, _ in added]


def expire(db: Runner, sql: GroupStatements, now: float, default_ttl: float) -> list[int]:
    """Groups not pushed for their TTL (`?ttl=`, else `default_ttl`; 0: never) stop being
    exported: their series are hidden for good (the next purge forgets them and their
    samples) and the groups are gone. Returns the series hidden."""
    hidden: list[int] = []
    for (group_id,) in db.execute(sql.select_expired, (default_ttl, default_ttl, now)
                                  ).fetchall():
        members = [series_id for series_id, _ in
                   db.execute(sql.select_members, (group_id,)).fetchall()]
        db.executemany(sql.expire_series, [(series_id,) for series_id in members])
        db.executemany(sql.delete_member, [(group_id, series_id) for series_id in members])
        db.execute(sql.delete_group, (group_id,))
        hidden += members
    return hidden
