"""The `metrics-ingest` command: argparse -> Settings -> serve / db migrate / db query / purge."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import orjson
from aiohttp import web

from metrics_ingest import __version__, retention
from metrics_ingest.app import create_app, server_options
from metrics_ingest.auth import remembered_token
from metrics_ingest.config import OPTIONS, ConfigError, Settings, load_settings
from metrics_ingest.http.server import (
    ConnectionGuard,
    GuardedRunner,
    connection_bound,
    raise_file_limit,
)
from metrics_ingest.keys import PARSERS
from metrics_ingest.logs import configure_logging
from metrics_ingest.store import StorageError, open_store

log = logging.getLogger("metrics_ingest.cli")

DB_OPTION = next(option for option in OPTIONS if option.field == "db_path")


# Flags spelled differently from the serve flag of the same setting.
FLAG_NAMES = {"purge": {"retention_days": "--days"}}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metrics-ingest",
        description="Push endpoint for metrics: HTTP in, SQLite inside, Prometheus and JSON out.",
    )
    parser.add_argument("--version", action="version", version=f"metrics-ingest {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="migrate the schema, then serve HTTP")
    for option in OPTIONS:
        serve.add_argument(option.flag, dest=option.field, metavar=option.env,
                           help=f"{option.help} (env {option.env})")

    db = commands.add_parser("db", help="database commands")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="DB_COMMAND")
    migrate = db_commands.add_parser("migrate", help="apply the sql/ migrations (idempotent)")
    migrate.add_argument("--db", dest="db_path", help=DB_OPTION.help)
    query = db_commands.add_parser("query", help="run ad-hoc SQL and print the result")
    query.add_argument("sql", help='e.g. "SELECT * FROM metrics LIMIT 10"')
    query.add_argument("--db", dest="db_path", help=DB_OPTION.help)
    query.add_argument("--json", action="store_true", help="print a JSON array of objects")

    commands.add_parser("push", add_help=False,
                        help="push samples or a Prometheus text file from a cron job, with "
                             "retries and a spool (see metrics-ingest push --help)")

    purge = commands.add_parser("purge", help="delete expired samples now and print the count")
    purge.add_argument("--days", dest="retention_days", help="keep this many days "
                       "(default METRICS_RETENTION_DAYS or 7)")
    purge.add_argument("--db", dest="db_path", help=DB_OPTION.help)
    return parser


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
    except (StorageError, OSError, ValueError) as exc:
        sys.stderr.write(f"metrics-ingest: error: {exc}\n")
        return 1


# -- serve ----------------------------------------------------------------------------------


def with_push_token(settings: Settings) -> Settings:
    """Use the configured tokens, or the one remembered next to the database (made once)."""
    if settings.auth_tokens:
        return settings
    token, path, created = remembered_token(settings.db_path)
    log.warning("METRICS_AUTH_TOKEN is not set: %s the push token in %s",
                "generated" if created else "using", path)
    return settings.replace(auth_tokens=(token,))


async def serve_until_signalled(settings: Settings) -> None:
    app = create_app(settings)
    files = raise_file_limit()
    guard = ConnectionGuard(connection_bound(settings.max_connections, files),
                            settings.header_timeout)
    runner = GuardedRunner(app, guard, handle_signals=False, **server_options(app))
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        tune_garbage_collector()
        # The big-body parsers start beside the first requests, not in front of them.
        warming = loop.run_in_executor(None, app[PARSERS].warm)
        for address in runner.addresses:
            host, port = address[0], address[1]
            log.info("listening on http://%s:%d (database %s)", host, port,
                     open_store(settings.database).location)
        await stop.wait()
        log.info("signal received: refusing new pushes, draining the queue")
        with contextlib.suppress(Exception):  # a failed warm-up leaves parsing to first use
            await warming
    finally:
        started = time.monotonic()
        await runner.cleanup()
        log.info("stopped cleanly in %.2f s", time.monotonic() - started)


def tune_garbage_collector() -> None:
    """Keep the cyclic collector off the request path once the server is up.

    Everything alive at startup (modules, the app, the series map) is frozen out of
    collections, and the youngest generation collects every 50,000 allocations instead of
    700. Measured on bench W1: push p99 13 -> 5 ms (full collections walked every object of
    the process) and 8% more pushes per second (bench/README.md, "Garbage collector").
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def event_loop_runner() -> asyncio.Runner:
    """uvloop when it is installed (the `fast` extra), else asyncio's own loop."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    with contextlib.suppress(ImportError):
        import uvloop

        factory = uvloop.new_event_loop
    return asyncio.Runner(loop_factory=factory)


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    with event_loop_runner() as runner:
        return runner.run(coro)


def serve(settings: Settings, args: argparse.Namespace) -> int:
    settings = with_push_token(settings)
    run(serve_until_signalled(settings))
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
    sys.stdout.write(
        f"purged {deleted} samples older than {settings.retention_days} days "
        f"from {store.location}\n")
    return 0


COMMANDS: dict[tuple[str, str | None], Callable[[Settings, argparse.Namespace], int]] = {
    ("serve", None): serve,
    ("db", "migrate"): db_migrate,
    ("db", "query"): db_query,
    ("purge", None): purge,
}
