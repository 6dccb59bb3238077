"""Connecting to PostgreSQL: the URL as configured (its password never logged), libpq's
own sources for the password (`PGPASSWORD`, `~/.pgpass`), and the driver's errors as the
store's StorageError."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from metrics_ingest.database_url import redact_url, scrub_url
from metrics_ingest.store import StorageError

URL_SCHEMES = ("postgresql://", "postgres://")
CONNECT_TIMEOUT_SECONDS = 5
# The service's waits on the server, as SQLite's busy timeout bounds them on a file: a lock
# held elsewhere (an operator's LOCK TABLE, DDL) ends the statement after 5 s, and a write
# statement ends after 60 s, so a push gets its 503 rather than waiting as long as the lock.
LOCK_TIMEOUT = "5s"
WRITE_STATEMENT_TIMEOUT = "60s"
# A server that stops answering over TCP (a host gone, a network cut): the connection is
# found dead in about a minute instead of the kernel's two hours.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
              "keepalives_count": 3}


def is_url(location: str) -> bool:
    return location.startswith(URL_SCHEMES)


def redact(url: str) -> str:
    """The URL with its passwords (user information, `password=` and `sslpassword=` in the
    query string) replaced by ***, the rest readable, for logs and messages. The reading is
    database_url.py's, which the settings validate the URL with (an unencoded @ in a password
    is refused there)."""
    return redact_url(url)


def connect(url: str, purpose: str) -> psycopg.Connection:
    """A blocking connection in autocommit mode (transactions are explicit)."""
    with engine_errors(url):
        return psycopg.connect(url, autocommit=True, **defaults(url, purpose))


async def connect_async(url: str, purpose: str) -> psycopg.AsyncConnection:
    with engine_errors(url):
        return await psycopg.AsyncConnection.connect(
            url, autocommit=True, **defaults(url, purpose))


def defaults(url: str, purpose: str) -> dict[str, Any]:
    """What a connection is given unless the URL says otherwise: a 5 s connect timeout,
    TCP keepalives, and an `application_name` naming the service and the connection's
    purpose (`pg_stat_activity` shows which is which). The URL's own settings win."""
    given = conninfo_to_dict(url)
    chosen: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT_SECONDS,
                              "application_name": f"metrics-ingest {purpose}", **KEEPALIVES}
    return {name: value for name, value in chosen.items() if name not in given}


def bounded_waits(url: str, writes: bool) -> list[str]:
    """The SET statements bounding a service connection's waits (LOCK_TIMEOUT; for the
    writer WRITE_STATEMENT_TIMEOUT too), less what the URL's `options` already set."""
    options = str(conninfo_to_dict(url).get("options") or "")
    wanted = {"lock_timeout": LOCK_TIMEOUT}
    if writes:
        wanted["statement_timeout"] = WRITE_STATEMENT_TIMEOUT
    return [f"SET {name} = '{value}'" for name, value in wanted.items()
            if name not in options]


@contextmanager
def engine_errors(url: str) -> Iterator[None]:
    """psycopg's errors as StorageError, in PostgreSQL's words on one line, the URL's
    passwords (as written, percent-decoded, or in the URL echoed whole) replaced by ***."""
    try:
        yield
    except psycopg.Error as exc:
        # (on one line: libpq's messages hold newlines and tabs, e.g. before its HINT)
        text = " ".join(scrub_url(str(exc), url).split()) or type(exc).__name__
        raise StorageError(f"PostgreSQL: {text}") from exc


def discard(conn: psycopg.Connection | None) -> None:
    """Close a lost connection before replacing it (left to the garbage collector, psycopg
    warns that it was deleted while open)."""
    if conn is not None and not conn.closed:
        with contextlib.suppress(psycopg.Error):
            conn.close()


async def discard_async(conn: psycopg.AsyncConnection | None) -> None:
    """`discard` for an async connection."""
    if conn is not None and not conn.closed:
        with contextlib.suppress(psycopg.Error):
            await conn.close()


def broken(conn: psycopg.Connection | psycopg.AsyncConnection | None) -> bool:
    """True when the connection must be replaced (closed, or lost mid-transaction)."""
    return conn is None or conn.closed or conn.broken
