"""The change feed between servers sharing one PostgreSQL database: every commit sends a
NOTIFY on `metrics_ingest` in its own transaction (so it is delivered if and only if the
commit happened, in commit order), and every server LISTENs, turning other servers'
notices into change records for its /metrics cache.

A notice is `<origin> <flags> <blocks>`: the sending server's id, flags (`e` read
everything again, `g` push-group times changed) and the series it touched as blocks of
2**BLOCK_BITS ids in base 36. /metrics caches by ranges of at least that size, so a block
names every range to re-read. A notice that would exceed PostgreSQL's 8000-byte payload
says `e` instead.
"""

from __future__ import annotations

import psycopg

from metrics_ingest.model import EVERYTHING, Change
from metrics_ingest.store import StorageError
from metrics_ingest.store.postgres.connection import broken, connect_async, engine_errors
from metrics_ingest.store.postgres.sql import LISTEN

BLOCK_BITS = 10
MAX_PAYLOAD = 7900
DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def base36(number: int) -> str:
    if number == 0:
        return "0"
    out = []
    while number:
        number, digit = divmod(number, 36)
        out.append(DIGITS[digit])
    return "".join(reversed(out))


def encode_change(origin: str, change: Change) -> str:
    everything = change.everything or change.families is not None
    flags = ("e" if everything else "") + ("g" if change.groups else "") or "-"
    if everything:
        return f"{origin} {flags} "
    blocks = ",".join(base36(block) for block in sorted({i >> BLOCK_BITS for i in change.series}))
    if len(blocks) + len(origin) + 8 > MAX_PAYLOAD:
        return f"{origin} e{flags.strip('-')} "
    return f"{origin} {flags} {blocks}"


def decode_change(payload: str) -> tuple[str, Change]:
    """(origin, change); a notice that does not parse means: read everything."""
    origin, _, rest = payload.partition(" ")
    flags, _, blocks = rest.partition(" ")
    try:
        if "e" in flags or not flags:
            return origin, Change([], everything=True, groups="g" in flags)
        series = [int(block, 36) << BLOCK_BITS for block in blocks.split(",") if block]
    except ValueError:
        return origin, EVERYTHING
    return origin, Change(series, groups="g" in flags)


class PostgresFeed:
    """The other servers' changes, for one server (see store.ChangeFeed)."""

    def __init__(self, url: str, origin: str) -> None:
        self.url = url
        self.origin = origin
        self.conn: psycopg.AsyncConnection | None = None
        self.heard: list[Change] = []

    def _hear(self, notice: psycopg.Notify) -> None:
        origin, change = decode_change(notice.payload)
        if origin != self.origin:
            self.heard.append(change)

    async def _listen(self) -> psycopg.AsyncConnection:
        conn = await connect_async(self.url, "change feed")
        conn.add_notify_handler(self._hear)
        with engine_errors(self.url):
            await conn.execute(LISTEN)
        return conn

    async def drain(self) -> list[Change]:
        """Every change other servers committed before this call (one round trip: the
        server delivers a listener's pending notices before answering it). After the
        connection was lost, notices may have been missed: the first drain on a new one
        says read everything. Raises StorageError while the database cannot be reached."""
        fresh = broken(self.conn)
        if fresh:
            if self.conn is not None:
                await self.conn.close()
            self.conn = await self._listen()
        assert self.conn is not None
        try:
            with engine_errors(self.url):
                await self.conn.execute("SELECT 1")
        except StorageError:
            await self.conn.close()
            raise
        heard, self.heard = self.heard, []
        if fresh and self.conn is not None:
            return [EVERYTHING, *heard]
        return heard

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()
