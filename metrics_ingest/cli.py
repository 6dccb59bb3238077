"""The `metrics-ingest` command: argparse -> Settings -> serve / db migrate / db query / purge."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from metrics_ingest import __version__, retention, supervisor
from metrics_ingest.auth import remembered_token
from metrics_ingest.config import OPTIONS, ConfigError, Settings, load_settings
from metrics_ingest.deleting import EVER, delete_offline
from metrics_ingest.http.admin import parse_time
from metrics_ingest.http.errors import ApiError
from metrics_ingest.inbox import StorageFailed
from metrics_ingest.logs import configure_logging
from metrics_ingest.parsing import LONGEST_TMPDIR_BYTES, SOCKET_PATH_BYTES, holds_sockets
from metrics_ingest.sdnotify import Notifier
from metrics_ingest.selectors import parse_selector
from metrics_ingest.serve import run, serve_until_signalled
from metrics_ingest.store import StorageError, open_store

log = logging.getLogger("metrics_ingest.cli")

DB_OPTION = next(option for option in OPTIONS if option.field == "db_path")


# Flags spelled differently from the serve flag of the same setting.
FLAG_NAMES = {"purge": {"retention_days": "--days"}}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metrics-ingest",
        description="Push endpoint for metrics: HTTP in, SQLite or PostgreSQL inside, Prometheus "
                    "and JSON out.",
    )
    parser.add_argument("--version", action="version", version=f"metrics-ingest {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="migrate the schema, then serve HTTP")
    for option in OPTIONS:
        serve.add_argument(option.flag, dest=option.field, metavar=option.env,
                           help=f"{option.help} (env {option.env})")

    db = commands.add_parser("db", help="database commands")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="DB_COMMAND")
    about = "apply the schema migrations (sql/ for SQLite, sql/postgres/ for PostgreSQL; " \
            "idempotent)"
    migrate = db_commands.add_parser("migrate", help=about, description=about)
    add_db_argument(migrate)
    query = db_commands.add_parser("query", help="run ad-hoc SQL and print the result")
    query.add_argument("sql", help='e.g. "SELECT * FROM metrics LIMIT 10"')
    add_db_argument(query)
    query.add_argument("--json", action="store_true", help="print a JSON array of objects")

    commands.add_parser("push", add_help=False,
                        help="push samples or a Prometheus text file from a cron job, with "
                             "retries and a spool (see metrics-ingest push --help)")

    delete = commands.add_parser("delete", help="delete the series a selector matches (as "
                                 "/api/v1/admin/tsdb/delete_series does)")
    delete.add_argument("--match", action="append", required=True, metavar="SELECTOR",
                        help='e.g. \'{source="old-cluster"}\' (repeatable)')
    delete.add_argument("--start", help="only samples at or after this time "
                        "(Unix seconds or RFC 3339)")
    delete.add_argument("--end", help="only samples at or before this time")
    add_db_argument(delete)

    purge = commands.add_parser("purge", help="delete expired samples now and print the count")
    purge.add_argument("--days", dest="retention_days", help="keep this many days "
                       "(default METRICS_RETENTION_DAYS or 7)")
    add_db_argument(purge)
    return parser


def add_db_argument(parser: argparse.ArgumentParser) -> None:
    """--db as serve spells it, for the commands that take only the database."""
    parser.add_argument("--db", dest="db_path", metavar=DB_OPTION.env,
                        help=f"{DB_OPTION.help} (env {DB_OPTION.env})")


def settings_from(args: argparse.Namespace) -> Settings:
    flags = {option.field: getattr(args, option.field, None) for option in OPTIONS}
    return load_settings(os.environ, flags, FLAG_NAMES.get(args.command))


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["push"]:
        # The pusher has its own options and needs nothing beyond the standard library.
        from metrics_ingest import push

        return push.main(arguments[1:])
    args = build_parser().parse_args(arguments)
    try:
        settings = settings_from(args)
        configure_logging(settings.log_format, settings.log_level)
        handler = COMMANDS[(args.command, getattr(args, "db_command", None))]
        return handler(settings, args)
    except ConfigError as exc:
        sys.stderr.write(f"metrics-ingest: error: {exc}\n")
        return 2
    except (StorageError, StorageFailed, OSError, ValueError) as exc:
        # (StorageFailed: a purge whose chunk the database refused, in the writer's words)
        sys.stderr.write(f"metrics-ingest: error: {exc}\n")
        return 1
    except ApiError as exc:  # a bad --start or --end, in the API's words
        sys.stderr.write(f"metrics-ingest: error: {exc.message}\n")
        return 2


# -- serve ----------------------------------------------------------------------------------


def with_push_token(settings: Settings) -> Settings:
    """Use the configured tokens, or the one remembered next to the SQLite file (made once).
    Raises ConfigError for a PostgreSQL database without one: replicas would each make
    their own (in their own directory) and refuse each other's pushes."""
    if settings.auth_tokens or settings.tokens_file is not None:
        return settings
    if settings.db_url is not None:
        raise ConfigError("METRICS_AUTH_TOKEN is not set and the database is PostgreSQL: set "
                          "METRICS_AUTH_TOKEN (the same on every replica) or "
                          "METRICS_TOKENS_FILE")
    token, path, created = remembered_token(settings.db_path)
    log.warning("METRICS_AUTH_TOKEN is not set: %s the push token in %s",
                "generated" if created else "using", path)
    return settings.replace(auth_tokens=(token,))


def check_temporary_directory() -> None:
    """ConfigError for a TMPDIR too long to hold the worker processes' sockets (every big
    body and PromQL query would fail with a 500)."""
    where = tempfile.gettempdir()
    if not holds_sockets(where):
        raise ConfigError(
            f"TMPDIR {where} is {len(os.fsencode(where))} bytes long: the sockets of the "
            f"parser and query processes there would pass the {SOCKET_PATH_BYTES} bytes a "
            f"Unix socket path may hold; give a directory of at most "
            f"{LONGEST_TMPDIR_BYTES} bytes")


def serve(settings: Settings, args: argparse.Namespace) -> int:
    check_temporary_directory()
    settings = with_push_token(settings)
    notifier = Notifier.from_environ(os.environ)  # systemd's, with Type=notify
    if settings.workers > 1:
        return supervisor.serve_workers(settings, notifier)
    # A reload asked for while the server starts is ignored until its handler is set
    # (it reads the files as it starts), rather than kill it.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    run(serve_until_signalled(settings, notifier=notifier))
    return 0


# -- db and purge ---------------------------------------------------------------------------


def db_migrate(settings: Settings, args: argparse.Namespace) -> int:
    store = open_store(settings.database)
    applied = store.migrate()
    sys.stdout.write(
        f"applied {len(applied)} migration(s) to {store.location}"
        + (f": {', '.join(applied)}\n" if applied else " (schema up to date)\n"))
    return 0


def db_query(settings: Settings, args: argparse.Namespace) -> int:
    if not args.sql.strip(" \t\n;"):
        raise ConfigError("db query needs a statement, got none")
    columns, rows, changed = open_store(settings.database).query(args.sql)
    if changed is not None:
        if args.json:
            sys.stdout.write(orjson.dumps({"changed": changed}).decode() + "\n")
        else:
            sys.stdout.write(f"{changed} row{'s' if changed != 1 else ''} changed\n")
        return 0
    if args.json:
        sys.stdout.write(orjson.dumps([dict(zip(columns, row, strict=True)) for row in rows],
                                      option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(format_table(columns, rows))
    return 0


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def format_table(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    """A plain aligned text table, with the row count underneath."""
    if not columns:
        return "(no result set)\n"
    cells = [columns] + [["NULL" if value is None else str(value) for value in row]
                         for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = [" | ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
             .rstrip() for line in cells]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines) + "\n"


def purge(settings: Settings, args: argparse.Namespace) -> int:
    if settings.db_url is None and not settings.db_path.exists():
        raise ValueError(f"no database at {settings.db_path} (set --db or METRICS_DB_PATH)")
    store = open_store(settings.database)
    store.migrate()
    deleted = run(retention.purge_store(store, settings.retention_days, time.time()))
    sys.stdout.write(f"purged {plural(deleted, 'sample')} older than "
                     f"{plural(settings.retention_days, 'day')} from {store.location}\n")
    return 0


def delete(settings: Settings, args: argparse.Namespace) -> int:
    if settings.db_url is None and not settings.db_path.exists():
        raise ValueError(f"no database at {settings.db_path} (set --db or METRICS_DB_PATH)")
    selectors = [parse_selector(text) for text in args.match]
    start = parse_time("start", args.start) if args.start else EVER[0]
    end = parse_time("end", args.end) if args.end else EVER[1]
    store = open_store(settings.database)
    store.migrate()

    def progress(line: str) -> None:
        sys.stderr.write(f"metrics-ingest delete: {line}\n")

    deleted = run(delete_offline(store, selectors, start, end, progress))
    sys.stdout.write(f"deleted {deleted.samples} samples of {deleted.series_matched} series "
                     f"({deleted.series_forgotten} series left empty and removed) from "
                     f"{store.location}\n")
    return 0


COMMANDS: dict[tuple[str, str | None], Callable[[Settings, argparse.Namespace], int]] = {
    ("delete", None): delete,
    ("serve", None): serve,
    ("db", "migrate"): db_migrate,
    ("db", "query"): db_query,
    ("purge", None): purge,
}
