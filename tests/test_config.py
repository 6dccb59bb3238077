"""Settings from environment and flags: defaults, overrides, one-line errors naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from metrics_ingest.config import OPTIONS, ConfigError, Settings, load_settings


def test_defaults_match_spec() -> None:
    settings = load_settings({})
    assert settings == Settings()
    assert (settings.host, settings.port, settings.db_path) == (
        "127.0.0.1", 8787, Path("data/metrics.db"))
    assert settings.retention_days == 7
    assert settings.allowed_origin == "*"
    assert settings.purge_cron == "0 2 * * *"
    assert settings.read_token is None
    assert settings.max_body_bytes == 10 * 1024 * 1024
    assert settings.export_window == 600
    assert settings.export_timestamps is True
    assert settings.queue_max_samples == 100_000
    assert settings.batch_max_samples == 10_000


def test_every_variable_is_read() -> None:
    env = {
        "METRICS_HOST": "0.0.0.0", "METRICS_PORT": "9000", "METRICS_DB_PATH": "/tmp/x.db",
        "METRICS_AUTH_TOKEN": " a , ,b,", "METRICS_READ_TOKEN": "r",
        "METRICS_RETENTION_DAYS": "30", "ALLOWED_ORIGIN": "https://dash.example",
        "METRICS_PURGE_CRON": "*/5 * * * *", "METRICS_MAX_BODY_BYTES": "2048",
        "METRICS_BODY_TIMEOUT": "5",
        "METRICS_EXPORT_WINDOW": "120", "METRICS_EXPORT_TIMESTAMPS": "false",
        "METRICS_QUEUE_MAX_SAMPLES": "500", "METRICS_BATCH_MAX_SAMPLES": "50",
        "METRICS_SYNCHRONOUS": "normal", "METRICS_LOG_FORMAT": "json", "METRICS_LOG_LEVEL": "debug",
        "METRICS_INFLUX_STRING_FIELDS": "reject", "METRICS_KEEPALIVE_TIMEOUT": "30",
        "METRICS_HEADER_TIMEOUT": "5", "METRICS_MAX_CONNECTIONS": "500",
        "METRICS_QUERY_MAX_SAMPLES": "1000", "METRICS_STALE_AFTER": "900",
        "METRICS_WORKERS": "2", "METRICS_ADMIN_TOKEN": "adm", "METRICS_TOKENS_FILE": "t.toml",
        "METRICS_MAX_SERIES_PER_SOURCE": "10", "METRICS_MAX_SERIES": "20",
        "METRICS_GROUP_TTL": "3600", "METRICS_TLS_CERT": "c.pem", "METRICS_TLS_KEY": "k.pem",
    }
    settings = load_settings(env)
    assert settings == Settings(
        host="0.0.0.0", port=9000, db_path=Path("/tmp/x.db"), auth_tokens=("a", "b"),
        read_token="r", retention_days=30, allowed_origin="https://dash.example",
        purge_cron="*/5 * * * *", max_body_bytes=2048, body_timeout=5, export_window=120,
        export_timestamps=False, queue_max_samples=500, batch_max_samples=50,
        synchronous="normal", log_format="json", log_level="DEBUG",
        influx_string_fields="reject", keepalive_timeout=30, header_timeout=5,
        max_connections=500, query_max_samples=1000, stale_after=900,
        workers=2, admin_token="adm", tokens_file=Path("t.toml"),
        max_series_per_source=10, max_series=20, group_ttl=3600, tls_cert=Path("c.pem"),
        tls_key=Path("k.pem"),
    )
    assert {option.env for option in OPTIONS} == set(env)


def test_a_postgresql_url_is_the_database() -> None:
    url = "postgresql://metrics:secret@db.example:5432/metrics"
    settings = load_settings({"METRICS_DB_PATH": url})
    assert settings.db_url == url
    assert settings.database == url
    assert settings.db_path == Path("data/metrics.db")  # (the remembered token's folder)
    with pytest.raises(ConfigError, match=r"METRICS_DB_PATH must be a file path or a "
                                          r"postgresql:// URL, got mysql://"):
        load_settings({"METRICS_DB_PATH": "mysql://x@y/z"})


def test_flags_override_environment() -> None:
    settings = load_settings({"METRICS_PORT": "9000", "METRICS_DB_PATH": "a.db"},
                             {"port": "9100", "db_path": None})
    assert settings.port == 9100
    assert settings.db_path == Path("a.db")


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("METRICS_PORT", "http", "METRICS_PORT must be an integer, got 'http'"),
    ("METRICS_PORT", "70000", "METRICS_PORT must be between 0 and 65535, got 70000"),
    ("METRICS_RETENTION_DAYS", "0", "METRICS_RETENTION_DAYS must be between 1 and 36500, got 0"),
    ("METRICS_RETENTION_DAYS", "1.5", "METRICS_RETENTION_DAYS must be an integer, got '1.5'"),
    ("METRICS_AUTH_TOKEN", " , ", "METRICS_AUTH_TOKEN holds no token"),
    ("METRICS_PURGE_CRON", "every day", "METRICS_PURGE_CRON is not a valid cron expression"),
    ("METRICS_EXPORT_TIMESTAMPS", "maybe", "METRICS_EXPORT_TIMESTAMPS must be true or false"),
    ("METRICS_MAX_BODY_BYTES", "10", "METRICS_MAX_BODY_BYTES must be at least 1024, got 10"),
    ("METRICS_EXPORT_WINDOW", "-5", "METRICS_EXPORT_WINDOW must be at least 1, got -5"),
    ("METRICS_SYNCHRONOUS", "off", "METRICS_SYNCHRONOUS must be one of full, normal"),
    ("METRICS_LOG_FORMAT", "xml", "METRICS_LOG_FORMAT must be one of text, json"),
    ("METRICS_HOST", "  ", "METRICS_HOST must not be empty"),
    ("METRICS_QUEUE_MAX_SAMPLES", "5",
     "METRICS_BATCH_MAX_SAMPLES must not exceed METRICS_QUEUE_MAX_SAMPLES"),
])
def test_bad_value_names_the_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({variable: value})
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_bad_flag_names_flag_and_variable() -> None:
    with pytest.raises(ConfigError, match=r"^--port \(METRICS_PORT\) must be an integer"):
        load_settings({}, {"port": "x"})
