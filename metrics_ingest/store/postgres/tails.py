"""Two write connections taking turns, so that a big batch's COPY runs while the batch before
it finishes on the other connection: its `latest` rows, its `sources` rows, its change notice
and COMMIT (its "tail", `Later.finish`, run on the writer's committer thread).

Order is kept by construction. A tail is handed over only once its batch's samples are in
(COPY done), and tails run one at a time, in batch order, on one thread: batch N's `latest`
and `sources` rows are written, and N committed, before N+1's are written. N+1's COPY may
meet a sample key N wrote (a repeated push): the COPY waits for N's transaction, then fails,
and N+1 goes again with its samples upserted after N's commit, so the later push still wins.
Only a plain batch hands its tail over (no series created or looked up in the table, no
family declared, no group operation or staleness marker, caches not reloaded): nothing the
next batch reads without a row lock depends on it. Any other batch waits for every tail
before its own COMMIT (and, with groups or markers, before it starts)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

import psycopg

from metrics_ingest.model import Change
from metrics_ingest.store import Later, StorageError
from metrics_ingest.store.postgres.connection import broken, connect, discard, engine_errors
from metrics_ingest.store.postgres.rows import write_latest
from metrics_ingest.store.postgres.sql import CHANNEL, COMMIT, NOTIFY, UPSERT_SOURCES

SLOTS = 2


class Turns:
    """The writer's connections, one per slot, and the tail each may still be running."""

    def __init__(self, url: str, opened: Callable[[psycopg.Connection], None]) -> None:
        self.url = url
        self.opened = opened  # told of every new connection (the session re-reads state)
        self.conns: list[psycopg.Connection | None] = [None] * SLOTS
        self.tails: list[threading.Event | None] = [None] * SLOTS
        self.slot = 0

    def connection(self, slot: int = 0) -> psycopg.Connection:
        """The slot's connection (a lost one replaced), once its tail is done."""
        tail = self.tails[slot]
        if tail is not None:
            tail.wait()
        conn = self.conns[slot]
        if broken(conn):
            discard(conn)
            conn = self.conns[slot] = connect(self.url, "writer")
            self.opened(conn)
        assert conn is not None
        return conn

    def wait_all(self) -> None:
        """Until every tail handed over has finished (committed or failed)."""
        for tail in self.tails:
            if tail is not None:
                tail.wait()

    def hand_over(self, conn: psycopg.Connection, latest: list[int | float],
                  sources: tuple[list[str], list[int]] | None, notice: str,
                  change: Change) -> Later:
        """The tail of the batch open on the current slot's connection; the next batch
        takes the other slot."""
        done = self.tails[self.slot] = threading.Event()
        self.slot = (self.slot + 1) % SLOTS

        def finish() -> Change:
            try:
                with engine_errors(self.url):
                    with conn.pipeline() as pipeline:
                        write_latest(conn, latest, pipeline=pipeline)
                        if sources is not None:
                            conn.execute(UPSERT_SOURCES, sources)
                        conn.execute(NOTIFY, (CHANNEL, notice))
                        committed = conn.execute(COMMIT)
                    if committed.statusmessage != "COMMIT":
                        raise StorageError(f"PostgreSQL: COMMIT answered "
                                           f"{committed.statusmessage}")
                return change
            except BaseException:
                with contextlib.suppress(psycopg.Error):
                    conn.rollback()
                raise
            finally:
                done.set()

        return Later(finish)

    def close(self) -> None:
        self.wait_all()
        for conn in self.conns:
            if conn is not None:
                conn.close()
