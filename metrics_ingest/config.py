"""Settings: the one place that reads the environment, and the validation of every value."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from cronsim import CronSim, CronSimError

from metrics_ingest.database_url import POSTGRES_SCHEMES, checked_url

LogFormat = Literal["text", "json", "journal"]
Synchronous = Literal["full", "normal"]
InfluxStringFields = Literal["skip", "reject"]


class ConfigError(ValueError):
    """A bad configuration value; the message names the variable and fits on one line."""


@dataclass(frozen=True)
class Settings:
    """Everything the service needs to run, validated; built by `load_settings`."""

    host: str = "127.0.0.1"
    port: int = 8787
    db_path: Path = Path("data/metrics.db")
    db_url: str | None = None  # a postgresql:// URL given as --db: the store is PostgreSQL
    auth_tokens: tuple[str, ...] = ()
    read_token: str | None = None
    admin_token: str | None = None
    tokens_file: Path | None = None
    max_series_per_source: int = 100_000
    max_series: int = 2_000_000
    group_ttl: int = 0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    retention_days: int = 7
    allowed_origin: str = "*"
    purge_cron: str = "0 2 * * *"
    max_body_bytes: int = 10 * 1024 * 1024
    body_timeout: int = 30
    export_window: int = 600
    export_timestamps: bool = True
    queue_max_samples: int = 100_000
    batch_max_samples: int = 10_000
    synchronous: Synchronous = "full"
    influx_string_fields: InfluxStringFields = "skip"
    keepalive_timeout: int = 75
    header_timeout: int = 10
    max_connections: int = 10_000
    query_max_samples: int = 50_000_000
    stale_after: int | None = None  # None: twice a source's median push interval, >= 5 min
    workers: int = 1
    log_format: LogFormat = "text"
    log_level: str = "INFO"

    @property
    def database(self) -> str:
        """Where the store is: the PostgreSQL URL, else the SQLite file's path."""
        return self.db_url or str(self.db_path)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _integer(low: int, high: int | None = None) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        text = raw.strip()
        digits = text.removeprefix("-")
        if not (digits.isascii() and digits.isdigit()) or len(text) > 18:
            raise ValueError(f"must be an integer, got {raw!r}")
        value = int(text)
        if value < low or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise ValueError(f"must be {bounds}, got {value}")
        return value

    return parse


def _boolean(raw: str) -> bool:
    text = raw.strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"must be true or false, got {raw!r}")


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        text = raw.strip().lower()
        if text not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {raw!r}")
        return text

    return parse


def _text(raw: str) -> str:
    if not raw.strip():
        raise ValueError("must not be empty")
    return raw.strip()


def _path(raw: str) -> Path:
    return Path(_text(raw))


class DatabaseUrl(str):
    """A --db value that names a PostgreSQL database rather than a file."""


def _location(raw: str) -> Path | DatabaseUrl:
    text = _text(raw)
    if text.startswith(POSTGRES_SCHEMES):
        return DatabaseUrl(checked_url(text))
    scheme, colon, rest = text.partition(":")
    if colon and scheme.lower() in ("postgresql", "postgres"):
        slashes = rest[:len(rest) - len(rest.lstrip("/"))]
        raise ValueError("must be a postgresql:// URL (two slashes, the scheme in lower case) "
                         f"or a file path (./ before a file so named), got {scheme}:{slashes}...")
    if "://" in text:
        raise ValueError("must be a file path or a postgresql:// URL, got "
                         f"{text.partition('://')[0]}://...")
    return Path(text)


def parse_token_list(raw: str) -> tuple[str, ...]:
    """Comma-separated tokens: spaces around entries trimmed, empty entries ignored."""
    tokens = tuple(token.strip() for token in raw.split(",") if token.strip())
    if not tokens:
        raise ValueError("holds no token (a comma-separated list of non-empty tokens)")
    return tokens


def parse_cron(raw: str) -> str:
    spec = raw.strip()
    try:
        CronSim(spec, datetime.now(UTC))
    except CronSimError as exc:
        raise ValueError(f"is not a valid cron expression ({exc}): {raw!r}") from None
    return spec


def _log_level(raw: str) -> str:
    return _choice("debug", "info", "warning", "error")(raw).upper()


@dataclass(frozen=True)
class Option:
    """One setting: its field in `Settings`, its environment variable and its CLI flag."""

    field: str
    env: str
    flag: str
    parse: Callable[[str], Any]
    help: str


OPTIONS: tuple[Option, ...] = (
    Option("host", "METRICS_HOST", "--host", _text, "address to listen on"),
    Option("port", "METRICS_PORT", "--port", _integer(0, 65535),
           "port to listen on (0 picks a free one, logged at start)"),
    Option("db_path", "METRICS_DB_PATH", "--db", _location,
           "SQLite database file, or a postgresql:// URL (the password in it, in PGPASSWORD "
           "or in ~/.pgpass; never logged)"),
    Option("auth_tokens", "METRICS_AUTH_TOKEN", "--auth-token", parse_token_list,
           "bearer token(s) for pushes, comma-separated (unset: one generated next to an "
           "SQLite file; with PostgreSQL, set this or --tokens-file)"),
    Option("read_token", "METRICS_READ_TOKEN", "--read-token", _text,
           "bearer token required by read endpoints"),
    Option("admin_token", "METRICS_ADMIN_TOKEN", "--admin-token", _text,
           "bearer token for admin endpoints (delete_series), unscoped"),
    Option("tokens_file", "METRICS_TOKENS_FILE", "--tokens-file", _path,
           "TOML file of scoped tokens (re-read on SIGHUP and when it changes)"),
    Option("max_series_per_source", "METRICS_MAX_SERIES_PER_SOURCE", "--max-series-per-source",
           _integer(1), "series one source may hold; pushes creating more get 422"),
    Option("max_series", "METRICS_MAX_SERIES", "--max-series", _integer(1),
           "series the whole database may hold; pushes creating more get 422"),
    Option("group_ttl", "METRICS_GROUP_TTL", "--group-ttl", _integer(0),
           "seconds a Pushgateway-API group lives without a push (0: forever)"),
    Option("tls_cert", "METRICS_TLS_CERT", "--tls-cert", _path,
           "PEM certificate (chain) to serve HTTPS with; re-read on SIGHUP"),
    Option("tls_key", "METRICS_TLS_KEY", "--tls-key", _path,
           "PEM private key of --tls-cert"),
    Option("retention_days", "METRICS_RETENTION_DAYS", "--retention-days", _integer(1, 36500),
           "days of samples kept"),
    Option("allowed_origin", "ALLOWED_ORIGIN", "--allowed-origin", _text,
           "value of Access-Control-Allow-Origin"),
    Option("purge_cron", "METRICS_PURGE_CRON", "--purge-cron", parse_cron,
           "retention purge schedule, cron syntax, UTC"),
    Option("max_body_bytes", "METRICS_MAX_BODY_BYTES", "--max-body-bytes", _integer(1024),
           "largest request body, raw and inflated"),
    Option("body_timeout", "METRICS_BODY_TIMEOUT", "--body-timeout", _integer(1, 3600),
           "seconds a push may take to send its body before it gets 408"),
    Option("export_window", "METRICS_EXPORT_WINDOW", "--export-window", _integer(1),
           "seconds: /metrics exports series whose newest sample is at most this old"),
    Option("export_timestamps", "METRICS_EXPORT_TIMESTAMPS", "--export-timestamps", _boolean,
           "write sample timestamps on /metrics (true/false)"),
    Option("queue_max_samples", "METRICS_QUEUE_MAX_SAMPLES", "--queue-max-samples",
           _integer(1), "samples waiting for the writer before pushes get 503"),
    Option("batch_max_samples", "METRICS_BATCH_MAX_SAMPLES", "--batch-max-samples",
           _integer(1), "most samples committed in one transaction (a bigger push is "
           "committed alone, its series made ahead in slices)"),
    Option("synchronous", "METRICS_SYNCHRONOUS", "--synchronous", _choice("full", "normal"),
           "SQLite only (PostgreSQL's commits follow its synchronous_commit): full: a 200 "
           "survives power loss; normal: survives a process crash only"),
    Option("keepalive_timeout", "METRICS_KEEPALIVE_TIMEOUT", "--keepalive-timeout",
           _integer(1, 86400), "seconds an idle connection stays open"),
    Option("header_timeout", "METRICS_HEADER_TIMEOUT", "--header-timeout", _integer(1, 3600),
           "seconds a request's headers may take to arrive before a 408"),
    Option("max_connections", "METRICS_MAX_CONNECTIONS", "--max-connections",
           _integer(16, 1_000_000),
           "most open connections (at most the open-file limit less 128)"),
    Option("query_max_samples", "METRICS_QUERY_MAX_SAMPLES", "--query-max-samples",
           _integer(1), "most samples a PromQL query may hold in memory (Prometheus's "
           "--query.max-samples)"),
    Option("stale_after", "METRICS_STALE_AFTER", "--stale-after", _integer(1),
           "seconds without a push after which the status page marks a source stale "
           "(default: twice its median push interval, at least 300)"),
    Option("workers", "METRICS_WORKERS", "--workers", _integer(1, 64),
           "server processes sharing the port (SO_REUSEPORT) and the database"),
    Option("influx_string_fields", "METRICS_INFLUX_STRING_FIELDS", "--influx-string-fields",
           _choice("skip", "reject"),
           "Influx string fields: skip them (counted) or reject the write with 400"),
    Option("log_format", "METRICS_LOG_FORMAT", "--log-format",
           _choice("text", "json", "journal"),
           "log lines as text, JSON, or journal (text for journald: levels, no time; the "
           "default when stderr is the journal)"),
    Option("log_level", "METRICS_LOG_LEVEL", "--log-level", _log_level,
           "debug, info, warning or error"),
)


def stderr_is_journal(environ: Mapping[str, str]) -> bool:
    """systemd connected stderr to the journal: JOURNAL_STREAM names that stream's device and
    inode (compared, since children inherit the variable with stderr redirected elsewhere)."""
    device, _, inode = environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        stat = os.fstat(2)
        return (stat.st_dev, stat.st_ino) == (int(device), int(inode))
    except (OSError, ValueError):
        return False


def load_settings(
    environ: Mapping[str, str],
    flags: Mapping[str, str | None] | None = None,
    flag_names: Mapping[str, str] | None = None,
) -> Settings:
    """Build `Settings` from the environment, with CLI flag values (raw strings) overriding.

    Raises ConfigError naming the variable (and the flag when the flag gave the value;
    `flag_names` renames flags for commands that spell them differently, e.g. purge --days).
    """
    flags = flags or {}
    flag_names = flag_names or {}
    values: dict[str, Any] = {}
    for option in OPTIONS:
        raw = flags.get(option.field)
        origin = flag_names.get(option.field, option.flag)
        if raw is None:
            raw = environ.get(option.env)
            origin = option.env
        if raw is None:
            continue
        try:
            value = option.parse(raw)
        except ValueError as exc:
            name = option.env if origin == option.env else f"{origin} ({option.env})"
            raise ConfigError(f"{name} {exc}") from None
        if isinstance(value, DatabaseUrl):
            values["db_url"] = str(value)
        else:
            values[option.field] = value
    if "log_format" not in values and stderr_is_journal(environ):
        values["log_format"] = "journal"
    settings = Settings(**values)
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise ConfigError("METRICS_TLS_CERT and METRICS_TLS_KEY must be given together")
    if settings.max_series_per_source > settings.max_series:
        raise ConfigError(
            "METRICS_MAX_SERIES_PER_SOURCE must not exceed METRICS_MAX_SERIES "
            f"({settings.max_series_per_source} > {settings.max_series})")
    if settings.batch_max_samples > settings.queue_max_samples:
        raise ConfigError(
            "METRICS_BATCH_MAX_SAMPLES must not exceed METRICS_QUEUE_MAX_SAMPLES "
            f"({settings.batch_max_samples} > {settings.queue_max_samples})"
        )
    return settings
