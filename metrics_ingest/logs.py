"""Log set-up: text, JSON or journal lines on stderr, and the one-line-per-request access log."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from typing import Any

import orjson
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from metrics_ingest.config import LogFormat
from metrics_ingest.tokens import PRINCIPAL

ACCESS_LOGGER = "metrics_ingest.access"
TEXT_FORMAT = "%(asctime)sZ %(levelname)s %(name)s: %(message)s"
JOURNAL_FORMAT = "%(levelname)s %(name)s: %(message)s"
# syslog priorities: journald takes a line's "<N>" prefix as its priority (SyslogLevelPrefix=).
PRIORITIES = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


class JournalFormatter(logging.Formatter):
    """Text for journald, which stamps each line itself: no time, and the level as a syslog
    prefix on every line (a traceback's lines are entries of their own), so that
    `journalctl -p warning` finds warnings and errors."""

    def __init__(self) -> None:
        super().__init__(JOURNAL_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{PRIORITIES.get(record.levelname, 6)}>"
        return "\n".join(prefix + line for line in super().format(record).splitlines())


def configure_logging(log_format: LogFormat, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    elif log_format == "journal":
        handler.setFormatter(JournalFormatter())
    else:
        formatter = logging.Formatter(TEXT_FORMAT, "%Y-%m-%dT%H:%M:%S")
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


# (time, method, path, status, seconds, token name)
Entry = tuple[float, str, str, int, float, str]

class AccessLogSink:
    """Request log lines, buffered and written to stderr about ten times a second.

    The logging module costs ~25 us a line (a quarter of a small push's CPU, measured with
    bench/compare W1). A request only records its fields here; lines are formatted in bulk
    when the buffer is flushed, which the event loop gets to while pushes wait for their
    commit (formatting per request cost 5-9% of W1's throughput). At most the last 0.1 s of
    request lines can be lost if the process is killed; stored data never depends on them.
    """

    FLUSH_SECONDS = 0.1
    FLUSH_LINES = 1000

    def __init__(self, log_format: LogFormat, fd: int | None = None) -> None:
        self.json = log_format == "json"
        self.journal = log_format == "journal"
        self.fd = sys.stderr.fileno() if fd is None else fd
        self._entries: list[Entry] = []
        self._timer: asyncio.TimerHandle | None = None

    def write(self, method: str, path: str, status: int, seconds: float,
              token: str = "") -> None:
        """One request; `token` is the name of the token it came with ("" for none)."""
        entries = self._entries
        entries.append((time.time(), method, path, status, seconds, token))
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.FLUSH_SECONDS, self.flush)
        elif len(entries) >= self.FLUSH_LINES:
            self.flush()

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._entries:
            return
        entries, self._entries = self._entries, []
        if self.json:
            lines = self._json_lines(entries)
        elif self.journal:
            lines = self._journal_lines(entries)
        else:
            lines = self._text_lines(entries)
        data = "".join(lines).encode("utf-8", "replace")
        try:
            while data:
                written = os.write(self.fd, data)
                data = data[written:]
        except BlockingIOError:
            pass  # stderr is a full non-blocking pipe: drop the rest rather than stall requests

    @staticmethod
    def _text_lines(entries: list[Entry]) -> list[str]:
        lines = []
        second = -1
        stamp = ""
        for now, method, path, status, seconds, token in entries:
            if int(now) != second:
                second = int(now)
                stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            lines.append(f"{stamp}Z INFO {ACCESS_LOGGER}: {method} {path} {status} "
                         f"{seconds * 1000:.1f}ms{token and ' token=' + token}\n")
        return lines

    @staticmethod
    def _journal_lines(entries: list[Entry]) -> list[str]:
        return [f"<6>INFO {ACCESS_LOGGER}: {method} {path} {status} {seconds * 1000:.1f}ms"
                f"{token and ' token=' + token}\n"
                for _, method, path, status, seconds, token in entries]

    @staticmethod
    def _json_lines(entries: list[Entry]) -> list[str]:
        return [orjson.dumps({
            "time": round(now, 3), "level": "info", "logger": ACCESS_LOGGER,
            "message": f"{method} {path} {status} {seconds * 1000:.1f}ms",
            "method": method, "path": path, "status": status,
            "duration_ms": round(seconds * 1000, 2), **({"token": token} if token else {}),
            }).decode() + "\n"
            for now, method, path, status, seconds, token in entries]


def access_log_class(sink: AccessLogSink) -> type[AbstractAccessLogger]:
    """aiohttp makes one access logger per connection; all of them write to `sink`."""

    class AccessLog(AbstractAccessLogger):
        def log(self, request: web.BaseRequest, response: web.StreamResponse,
                time: float) -> None:
            # The path without its query string: a token passed in a query never reaches logs.
            # The token's name, never the token.
            principal = request.get(PRINCIPAL)
            sink.write(request.method, request.path, response.status, time,
                       "" if principal is None else principal.name)

        @property
        def enabled(self) -> bool:
            return True

    return AccessLog
