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
    """What a connection is given unless the URL says otherwise: a 5 s connect timeout and an
    `application_name` naming the service and the connection's purpose (`pg_stat_activity`
    shows which is which). The URL's own `connect_timeout` or `application_name` wins."""
    given = conninfo_to_dict(url)
    chosen: dict[str, Any] = {}
    if "connect_timeout" not in given:
        chosen["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
    if "application_name" not in given:
        chosen["application_name"] = f"metrics-ingest {purpose}"
    return chosen


@contextmanager
def engine_errors(url: str) -> Iterator[None]:
    """psycopg's errors as StorageError, in PostgreSQL's words, the URL's passwords (as
    written, percent-decoded, or in the URL echoed whole) replaced by ***."""
    try:
        yield
    except psycopg.Error as exc:
        text = scrub_url(str(exc).strip(), url) or type(exc).__name__
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
