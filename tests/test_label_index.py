"""The label index (sql/0009, sql/postgres/0004; SQLite writes it behind the writer since
sql/0010): kept true as series come and go, filled for series stored before it, and a
selector through it picks exactly the series a check of every stored series would
(tests/test_promql_differential.py compares with Prometheus itself). Both engines."""

from __future__ import annotations

import re
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from metrics_ingest import retention
from metrics_ingest.config import Settings
from metrics_ingest.keys import TELEMETRY, WRITER
from metrics_ingest.store import migrations as runner
from metrics_ingest.store.sqlite import migrations
from tests.conftest import AUTH, Clock, rows

Client = TestClient[web.Request, web.Application]
NOW = 1_795_000_000
SERIES = [  # (name, source, labels)
    ("cpu", "alpha", {"mode": "user", "cpu": "0"}),
    ("cpu", "alpha", {"mode": "system", "cpu": "0"}),
    ("cpu", "beta", {"mode": "user", "cpu": "1"}),
    ("cpu", "beta", {"mode": "idle"}),
    ("mem", "alpha", {"kind": "free"}),
    ("mem", "gamma", {"kind": "used", "mode": "user"}),
    ("up", "gamma", {}),
]
SELECTORS = [
    'cpu{mode="user"}', 'cpu{mode=~"us.*|idle"}', 'cpu{mode!="user"}', 'cpu{cpu=""}',
    '{mode="user"}', '{__name__=~"c.*|m.*", mode=~".+"}', '{source="gamma"}',
    '{__name__="mem", kind!~"f.*"}', 'cpu{mode=~"nothing"}', '{source=~"al.*", cpu="0"}',
    'up', '{__name__=~"u.*|cpu", source!="beta"}', 'cpu{mode=~"(?i)USER"}',
]


async def push_all(client: Client, timestamp: int = NOW) -> None:
    for name, source, labels in SERIES:
        body = {"source": source, "labels": labels, "timestamp": timestamp,
                "metrics": {name: 1}}
        assert (await client.post("/ingest", json=body, headers=AUTH)).status == 200


def expected(selector: str) -> list[dict[str, str]]:
    """The selector checked against every stored series, by hand."""
    name, _, body = selector.partition("{")
    matchers = [("__name__", "=", name)] if name else []
    for item in re.findall(r'(\w+)(=~|!~|!=|=)"([^"]*)"', body):
        matchers.append(item)
    found = []
    for metric, source, labels in SERIES:
        every = {"__name__": metric, "source": source, **labels}
        ok = True
        for label, op, value in matchers:
            have = every.get(label, "")
            hit = (have == value if op in ("=", "!=")
                   else re.fullmatch(value, have) is not None)
            ok = ok and (hit if op in ("=", "=~") else not hit)
        if ok:
            found.append(every)
    return sorted(found, key=lambda labels: sorted(labels.items()))


async def series(client: Client, selector: str, **params: str) -> Any:
    answer = await (await client.get("/api/v1/series",
                                     params={"match[]": selector, **params})).json()
    assert answer["status"] == "success", answer
    return answer["data"]


async def test_selectors_through_the_index_pick_what_a_full_check_picks(
        client: Client, clock: Clock) -> None:
    clock.pinned = NOW
    await push_all(client)
    for selector in SELECTORS:
        got = sorted(await series(client, selector), key=lambda labels: sorted(labels.items()))
        assert got == expected(selector), selector


async def test_label_names_and_values_come_from_the_index(client: Client, clock: Clock
                                                         ) -> None:
    clock.pinned = NOW
    await push_all(client, NOW - 7200)  # old
    fresh = {"source": "delta", "labels": {"zone": "z1"}, "timestamp": NOW, "metrics": {"new": 1}}
    assert (await client.post("/ingest", json=fresh, headers=AUTH)).status == 200

    async def get(path: str, **params: str) -> Any:
        answer = await (await client.get(path, params=params)).json()
        assert answer["status"] == "success", answer
        return answer["data"]

    assert await get("/api/v1/label/mode/values") == ["idle", "system", "user"]
    assert await get("/api/v1/label/__name__/values") == ["cpu", "mem", "new", "up"]
    assert await get("/api/v1/label/source/values") == ["alpha", "beta", "delta", "gamma"]
    assert await get("/api/v1/labels") == ["__name__", "cpu", "kind", "mode", "source", "zone"]
    # A series counts when it has a sample since `start`.
    since = str(NOW - 60)
    assert await get("/api/v1/label/mode/values", start=since) == []
    assert await get("/api/v1/label/__name__/values", start=since) == ["new"]
    assert await get("/api/v1/labels", start=since) == ["__name__", "source", "zone"]
    assert await series(client, '{source=~".+"}', start=since) == [
        {"__name__": "new", "source": "delta", "zone": "z1"}]


async def caught_up(client: Client, settings: Settings) -> None:
    """Poll (deadline 10 s) until the label index holds every stored series: the server
    writes it behind its batches on its own."""
    deadline = time.monotonic() + 10
    indexed = "SELECT count(DISTINCT series_id) FROM series_labels WHERE name = 'source'"
    while rows(settings, indexed) != rows(settings, "SELECT count(*) FROM series"):
        assert time.monotonic() < deadline, "the label index did not catch up"
        await client.get("/healthz")  # (lets the server's loop run meanwhile)


async def test_the_index_follows_series_as_they_go(client: Client, clock: Clock,
                                                  settings: Settings) -> None:
    clock.pinned = NOW
    await push_all(client, NOW - 30 * 86400)
    fresh = {"source": "beta", "labels": {"mode": "user"}, "timestamp": NOW,
             "metrics": {"kept": 1}}
    assert (await client.post("/ingest", json=fresh, headers=AUTH)).status == 200
    await caught_up(client, settings)
    pairs = rows(settings, "SELECT count(*) FROM series_labels")
    assert pairs == [(sum(1 + len(labels) for _, _, labels in SERIES) + 2,)]
    app = client.app
    await retention.purge(app[WRITER], app[TELEMETRY], 7, NOW)
    assert rows(settings, "SELECT name, value FROM series_labels ORDER BY name") == [
        ("mode", "user"), ("source", "beta")]
    assert await series(client, '{mode="user"}') == [
        {"__name__": "kept", "mode": "user", "source": "beta"}]


def migrated_before(tmp_path: Path, version: int) -> Path:
    """An SQLite file migrated up to, not including, migration `version`."""
    before = tmp_path / "sql"
    before.mkdir()
    for path in runner.sql_directory().glob("*.sql"):
        if int(path.name[:4]) < version:
            shutil.copy(path, before / path.name)
    db = tmp_path / "m.db"
    migrations.migrate(db, before)
    return db


def test_migration_fills_the_index_for_series_stored_before(tmp_path: Path) -> None:
    db = migrated_before(tmp_path, 9)
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO series (id, metric_name, source, labels) VALUES"
                     " (1, 'cpu', 'alpha', '{\"cpu\":\"0\",\"mode\":\"user\"}'),"
                     " (2, 'up', 'beta', '')")
    conn.close()
    assert migrations.migrate(db) == ["0009_label_index", "0010_label_index_behind",
                                      "0011_sample_blocks"]
    assert sorted(rows(db, "SELECT name, value, series_id FROM series_labels")) == [
        ("cpu", "0", 1), ("mode", "user", 1), ("source", "alpha", 1), ("source", "beta", 2)]


@pytest.mark.parametrize("selector", ['{mode=~"[z-a]"}'])
async def test_a_bad_regex_is_a_bad_request(client: Client, selector: str) -> None:
    response = await client.get("/api/v1/series", params={"match[]": selector})
    assert response.status == 400
