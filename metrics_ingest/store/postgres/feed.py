"""The change feed between servers sharing one PostgreSQL database: every commit sends a
NOTIFY on `metrics_ingest` in its own transaction (so it is delivered if and only if the
commit happened, in commit order), and every server LISTENs, turning other servers'
notices (store/changes.py) into change records for its /metrics cache."""

from __future__ import annotations

import asyncio

import psycopg

from metrics_ingest.model import EVERYTHING, Change
from metrics_ingest.store import StorageError
from metrics_ingest.store.changes import decode_change
from metrics_ingest.store.postgres.connection import (
    broken,
    connect_async,
    discard_async,
    engine_errors,
)
from metrics_ingest.store.postgres.reader import lost, reading_again
from metrics_ingest.store.postgres.sql import LISTEN


class PostgresFeed:
    """The other servers' changes, for one server (see store.ChangeFeed)."""

    def __init__(self, url: str, origin: str) -> None:
        self.url = url
        self.origin = origin
        self.conn: psycopg.AsyncConnection | None = None
        self.heard: list[Change] = []
        # One drain at a time: the scrape's and the follower's would each open a connection
        # at once, and the one overwritten would be left open (and its notices lost).
        self._draining = asyncio.Lock()

    def _hear(self, notice: psycopg.Notify) -> None:
        origin, change = decode_change(notice.payload)
        if origin != self.origin:
            self.heard.append(change)

    async def _listen(self) -> psycopg.AsyncConnection:
        conn = await connect_async(self.url, "change feed")
        try:
            conn.add_notify_handler(self._hear)
            with engine_errors(self.url):
                await conn.execute(LISTEN)
        except BaseException:  # (cancelled at shutdown too): not left open behind
            await conn.close()
            raise
        return conn

    async def drain(self) -> list[Change]:
        """Every change other servers committed before this call (one round trip: the
        server delivers a listener's pending notices before answering it). After the
        connection was lost, notices may have been missed: the first drain on a new one
        says read everything. A connection found lost (as after a restart of PostgreSQL) is
        replaced at once, within the call. Raises StorageError while the database cannot be
        reached."""
        async with self._draining:
            return await self._drain()

    async def _drain(self) -> list[Change]:
        usable = not broken(self.conn)
        try:
            return await self._drain_once()
        except StorageError as exc:
            if not lost(self.conn, usable):
                raise
            reading_again("change feed", exc)
        return await self._drain_once()  # on a new connection: says read everything

    async def _drain_once(self) -> list[Change]:
        fresh = broken(self.conn)
        if fresh:
            await discard_async(self.conn)
            self.conn = await self._listen()
        assert self.conn is not None
        try:
            with engine_errors(self.url):
                await self.conn.execute("SELECT 1")
        except StorageError:
            await self.conn.close()
            raise
        heard, self.heard = self.heard, []
        if fresh:
            return [EVERYTHING, *heard]
        return heard

    async def close(self) -> None:
        async with self._draining:
            if self.conn is not None:
                await self.conn.close()
