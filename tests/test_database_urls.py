"""The --db setting (METRICS_DB_PATH) as a user meets it: a bad PostgreSQL URL or a one-slash
typo stops the command with one line naming the setting, a password (in the user information
or the query string) is never printed, and serve on PostgreSQL needs a token of its own."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from metrics_ingest import cli as cli_module
from metrics_ingest.config import ConfigError, load_settings
from metrics_ingest.store import StorageError
from metrics_ingest.store.postgres.connection import engine_errors, redact
from tests.conftest import PostgresServer, Service
from tests.pg_cluster import PASSWORD

SECRET = "s3cret-pw"
SETTING = "--db (METRICS_DB_PATH)"
AT_MESSAGE = ("must hold no @ but the one before the host: percent-encode any other @ (in the "
              "user name, password or database name) as %40")
TYPO_MESSAGE = ("must be a postgresql:// URL (two slashes, the scheme in lower case) or a file "
                "path (./ before a file so named), got postgresql:/...")


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    """The real command; METRICS_* variables of the calling shell left out."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith("METRICS_")}
    return subprocess.run([sys.executable, "-m", "metrics_ingest", *args], cwd=cwd,
                          env={**clean, **(env or {})}, capture_output=True, text=True,
                          timeout=60)


def in_query(url: str) -> str:
    """The suite's URL with its password moved from the user information to the query."""
    assert f":{PASSWORD}@" in url
    return url.replace(f":{PASSWORD}@", "@") + f"?password={PASSWORD}&connect_timeout=5"


@pytest.mark.parametrize(("url", "message"), [
    (f"postgresql://metrics:p@{SECRET}@127.0.0.1:55432/metrics", AT_MESSAGE),
    (f"postgresql://metrics:pa/{SECRET}@127.0.0.1/metrics", AT_MESSAGE),
    (f"postgresql://metrics:{SECRET}@127.0.0.1/metrics?sslmode=bogus",
     "has sslmode=bogus: must be one of disable, allow, prefer, require, verify-ca, "
     "verify-full"),
    (f"postgresql://metrics@127.0.0.1:99999/metrics?password={SECRET}",
     "has a port that is not a number from 1 to 65535"),
    (f"postgresql://metrics:{SECRET}@127.0.0.1:54x/metrics",
     "has a port that is not a number from 1 to 65535"),
    (f"postgresql://metrics:{SECRET}@127.0.0.1/metrics?bogusparam=1",
     'is not a valid PostgreSQL URL: invalid URI query parameter: "bogusparam"'),
    (f"postgresql://metrics:{SECRET}@[::1/x",
     'is not a valid PostgreSQL URL: end of string reached when looking for matching "]" in '
     'IPv6 host address in URI: "postgresql://metrics:***@[::1/x"'),
    (f"postgresql://metrics:%zz{SECRET}@127.0.0.1/metrics",
     'is not a valid PostgreSQL URL: invalid percent-encoded token: "***"'),
    (f"postgresql:/metrics:{SECRET}@127.0.0.1/metrics", TYPO_MESSAGE),
    ("postgres:metrics@127.0.0.1/metrics",
     TYPO_MESSAGE.replace("postgresql:/...", "postgres:...")),
    ("POSTGRESQL://metrics@127.0.0.1/metrics",
     TYPO_MESSAGE.replace("postgresql:/...", "POSTGRESQL://...")),
])
def test_a_bad_url_is_one_line_naming_the_setting_without_the_password(
        url: str, message: str) -> None:
    with pytest.raises(ConfigError) as by_flag:
        load_settings({}, {"db_path": url})
    assert str(by_flag.value) == f"{SETTING} {message}"
    with pytest.raises(ConfigError) as by_variable:
        load_settings({"METRICS_DB_PATH": url})
    assert str(by_variable.value) == f"METRICS_DB_PATH {message}"
    assert SECRET not in str(by_flag.value)


@pytest.mark.parametrize("url", [
    "postgresql://metrics@127.0.0.1:55432/metrics?password=a%26b&sslmode=verify-full",
    "postgres://db1:5432,db2:5433/metrics?target_session_attrs=read-write",
    "postgresql://metrics:p%40ss@[::1]:5432/metrics",
    "postgresql://metrics:pa?ss@127.0.0.1/metrics",  # libpq reads the ? as the password's
])
def test_a_good_url_is_taken_as_written(url: str) -> None:
    assert load_settings({"METRICS_DB_PATH": url}).db_url == url


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://metrics@h:5432/db?password=change-me",
     "postgresql://metrics@h:5432/db?password=***"),
    ("postgresql://metrics:pw@h/db?sslmode=require&password=x%26y&application_name=a",
     "postgresql://metrics:***@h/db?sslmode=require&password=***&application_name=a"),
    ("postgresql://h/db?sslpassword=key-pw", "postgresql://h/db?sslpassword=***"),
    ("postgresql://metrics:p@ss@h/db", "postgresql://metrics:***@h/db"),
    ("postgresql://metrics:pa?ss@h/db?password=q", "postgresql://metrics:***@h/db?password=***"),
    ("postgresql://metrics@h/db", "postgresql://metrics@h/db"),
])
def test_redact_hides_every_password_and_keeps_the_rest(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_driver_messages_lose_the_password_in_any_spelling() -> None:
    url = "postgresql://metrics:user%2Fpw@h/db?password=query%26pw"
    with pytest.raises(StorageError) as caught, engine_errors(url):
        raise psycopg.OperationalError(
            f'bad: "{url}", user/pw, query&pw, query%26pw, user%2Fpw')
    assert str(caught.value) == (
        'PostgreSQL: bad: "postgresql://metrics:***@h/db?password=***", ***, ***, ***, ***')


@pytest.mark.slow
@pytest.mark.parametrize("how", ["flag", "variable"])
def test_the_cli_refuses_a_bad_url_with_exit_2_and_creates_nothing(
        tmp_path: Path, how: str) -> None:
    cases = [(f"postgresql://metrics:p@{SECRET}@127.0.0.1:55432/metrics", AT_MESSAGE),
             (f"postgresql:/metrics:{SECRET}@127.0.0.1/metrics", TYPO_MESSAGE)]
    for url, message in cases:
        if how == "flag":
            result = cli("db", "migrate", "--db", url, cwd=tmp_path)
            name = SETTING
        else:
            result = cli("db", "migrate", cwd=tmp_path, env={"METRICS_DB_PATH": url})
            name = "METRICS_DB_PATH"
        assert result.returncode == 2
        assert result.stderr == f"metrics-ingest: error: {name} {message}\n"
        assert SECRET not in result.stdout + result.stderr
    assert list(tmp_path.iterdir()) == []  # the typo made no SQLite file


@pytest.mark.slow
def test_migrate_and_purge_print_a_query_string_password_as_stars(
        tmp_path: Path, postgres: PostgresServer) -> None:
    url = in_query(postgres.new_database())
    shown = url.replace(f"password={PASSWORD}", "password=***")
    migrated = cli("db", "migrate", "--db", url, cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout == f"applied 0 migration(s) to {shown} (schema up to date)\n"
    purged = cli("purge", "--days", "1", cwd=tmp_path, env={"METRICS_DB_PATH": url})
    assert purged.returncode == 0, purged.stderr
    assert purged.stdout == f"purged 0 samples older than 1 day from {shown}\n"
    wrong = url.replace(PASSWORD, "not-the-password")
    refused = cli("db", "migrate", "--db", wrong, cwd=tmp_path)
    assert refused.returncode == 1
    assert "password authentication failed" in refused.stderr
    assert "not-the-password" not in refused.stderr
    assert PASSWORD not in migrated.stdout + purged.stdout + refused.stderr


@pytest.mark.slow
def test_serve_logs_a_query_string_password_as_stars(
        service_factory: Callable[..., Service], postgres: PostgresServer) -> None:
    url = in_query(postgres.new_database())
    service = service_factory(db=url)
    service.process.terminate()
    service.process.wait(15)
    log = service.log()
    shown = url.replace(f"password={PASSWORD}", "password=***")
    assert f"(database {shown})" in log
    assert PASSWORD not in log


@pytest.mark.slow
def test_serve_on_postgresql_without_a_token_refuses_to_start(tmp_path: Path) -> None:
    # Refused before connecting: no database needs to answer at this address.
    result = cli("serve", "--port", "0", cwd=tmp_path,
                 env={"METRICS_DB_PATH": "postgresql://metrics@127.0.0.1:1/metrics"})
    assert result.returncode == 2
    assert result.stderr == (
        "metrics-ingest: error: METRICS_AUTH_TOKEN is not set and the database is PostgreSQL: "
        "set METRICS_AUTH_TOKEN (the same on every replica) or METRICS_TOKENS_FILE\n")
    assert list(tmp_path.iterdir()) == []  # no data/auth-token of this directory's own


@pytest.mark.slow
def test_purge_counts_in_the_singular(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    assert cli("db", "migrate", "--db", str(db), cwd=tmp_path).returncode == 0
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO series VALUES (1, 'a', 'hpc', '', '')")
    conn.execute("INSERT INTO samples VALUES (1000, 1, 1)")
    conn.execute("INSERT INTO latest (series_id, timestamp, value) VALUES (1, 1000, 1)")
    conn.commit()
    conn.close()
    result = cli("purge", "--days", "1", "--db", str(db), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"purged 1 sample older than 1 day from {db}\n"


@pytest.mark.parametrize(("command", "wanted"), [
    ((), ["SQLite or PostgreSQL inside"]),
    (("db",), ["sql/ for SQLite, sql/postgres/ for PostgreSQL"]),
    (("db", "migrate"), ["sql/postgres/", "~/.pgpass", "(env METRICS_DB_PATH)"]),
    (("db", "query"), ["PGPASSWORD or in ~/.pgpass", "(env METRICS_DB_PATH)"]),
    (("purge",), ["~/.pgpass", "(env METRICS_DB_PATH)"]),
    (("delete",), ["~/.pgpass", "(env METRICS_DB_PATH)"]),
    (("serve",), ["SQLite only (PostgreSQL's commits follow its synchronous_commit)",
                  "with PostgreSQL, set this or --tokens-file"]),
])
def test_help_says_what_is_true_of_both_engines(
        capsys: pytest.CaptureFixture[str], command: tuple[str, ...],
        wanted: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli_module.main([*command, "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for words in wanted:
        assert words in text
