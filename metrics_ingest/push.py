"""`metrics-ingest push`: a pusher for cron jobs and batch scripts.

Standard library only, so this one file also runs on a bare HPC login node:
    python3 push.py --url https://metrics.example.org --source hpc slurm_pending_jobs=42

When the server cannot be reached, or answers 5xx/408/429, it retries with backoff within a
time budget, then keeps the push in a spool directory; the next run sends the spool first,
oldest first, and deletes only what the server acknowledged. Pushes carry their own
timestamp, so a late delivery stores the time the value was measured.
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import json
import os
import random
import re
import struct
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

EXIT_OK = 0
EXIT_REJECTED = 2  # the server refused the push itself (4xx): retrying cannot help
EXIT_SPOOLED = 75  # EX_TEMPFAIL: kept in the spool, will be sent by a later run
RETRYABLE = {408, 425, 429, 500, 502, 503, 504}
NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


@dataclass(frozen=True)
class Request:
    """One push, as it travels and as it is spooled (the token is never written down)."""

    method: str
    path: str  # with its query string
    content_type: str
    body: bytes
    created: float
    encoding: str = ""  # Content-Encoding, when the body is compressed (remote_write: snappy)

    def to_json(self) -> str:
        return json.dumps({"method": self.method, "path": self.path,
                           "content_type": self.content_type,
                           "body": base64.b64encode(self.body).decode(),
                           "created": self.created, "encoding": self.encoding})

    @classmethod
    def from_json(cls, text: str) -> Request:
        data = json.loads(text)
        return cls(data["method"], data["path"], data["content_type"],
                   base64.b64decode(data["body"]), float(data["created"]),
                   data.get("encoding", ""))


class Rejected(Exception):
    """A 4xx other than the retryable ones: the push itself is wrong."""


class Unreachable(Exception):
    """No acknowledgement within the time budget."""


def parse_pairs(pairs: Sequence[str], what: str) -> dict[str, str]:
    parsed: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"metrics-ingest push: {what} {pair!r} is not name=value")
        parsed[name] = value
    return parsed


def numbers(metrics: dict[str, str]) -> dict[str, float]:
    values: dict[str, float] = {}
    for name, raw in metrics.items():
        if not NAME_RE.fullmatch(name):
            raise SystemExit(f"metrics-ingest push: {name!r} is not a metric name")
        try:
            values[name] = float(raw)
        except ValueError:
            raise SystemExit(f"metrics-ingest push: {name}={raw!r} is not a number") from None
    return values


def metrics_request(source: str, labels: dict[str, str], metrics: dict[str, str],
                    now: float) -> Request:
    values = numbers(metrics)
    payload: dict[str, object] = {"source": source, "timestamp": int(now), "metrics": values}
    if labels:
        payload["labels"] = labels
    return Request("POST", "/ingest", "application/json", json.dumps(payload).encode(), now)


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def snappy_literals(data: bytes) -> bytes:
    """A valid snappy block holding `data` as literals (no compression: no library needed)."""
    out = bytearray(varint(len(data)))
    for start in range(0, len(data), 65536):
        chunk = data[start:start + 65536]
        out += bytes([61 << 2]) + (len(chunk) - 1).to_bytes(2, "little") + chunk
    return bytes(out)


def remote_write_request(source: str, labels: dict[str, str], metrics: dict[str, float],
                         now: float) -> Request:
    """Prometheus remote_write 1.0: a WriteRequest with one series per sample."""
    body = b""
    for name, value in metrics.items():
        pairs = sorted({"__name__": name, **labels}.items())
        series = b"".join(field(1, field(1, k.encode()) + field(2, v.encode()))
                          for k, v in pairs)
        sample = varint(1 << 3 | 1) + struct.pack("<d", value) + varint(2 << 3) + varint(
            int(now * 1000))
        body += field(1, series + field(2, sample))
    path = "/api/v1/write?source=" + urllib.parse.quote(source)
    return Request("POST", path, "application/x-protobuf", snappy_literals(body), now,
                   "snappy")


def text_request(source: str, labels: dict[str, str], text: bytes, replace: bool,
                 now: float) -> Request:
    """Prometheus text through the Pushgateway API: the source is the job, labels the group."""
    parts = ["job@base64", b64(source)]
    for name, value in labels.items():
        parts += [f"{name}@base64", b64(value)]
    path = "/metrics/" + "/".join(parts) + f"?timestamp={int(now)}"
    return Request("PUT" if replace else "POST", path, "text/plain; version=0.0.4", text, now)


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=") or "="


def send(url: str, token: str, request: Request, deadline: float) -> None:
    """Deliver with retries until `deadline` (time.monotonic); raises Rejected or Unreachable."""
    delay = 0.5
    while True:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": request.content_type,
                   "User-Agent": "metrics-ingest-push"}
        if request.encoding:
            headers["Content-Encoding"] = request.encoding
        http = urllib.request.Request(url.rstrip("/") + request.path, data=request.body,
                                      method=request.method, headers=headers)
        retry_after: float | None = None
        remaining = deadline - time.monotonic()
        try:
            with urllib.request.urlopen(http, timeout=max(1.0, min(10.0, remaining))) as reply:
                reply.read()
                return
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode("utf-8", "replace")
            if exc.code not in RETRYABLE:
                raise Rejected(f"HTTP {exc.code}: {detail}") from None
            retry_after = parse_retry_after(exc.headers.get("Retry-After"))
            reason = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            reason = str(getattr(exc, "reason", exc))
        wait = retry_after if retry_after is not None else delay * random.uniform(0.8, 1.2)
        if time.monotonic() + wait >= deadline:
            raise Unreachable(reason)
        time.sleep(wait)
        delay = min(delay * 2, 10.0)


def parse_retry_after(value: str | None) -> float | None:
    if value is None or not value.strip().isdigit():
        return None
    return min(float(value.strip()), 60.0)


def default_spool() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "metrics-ingest" / "spool"


@contextmanager
def locked(spool: Path) -> Iterator[None]:
    """One pusher at a time drains a spool (overlapping cron runs would resend)."""
    spool.mkdir(parents=True, exist_ok=True)
    with (spool / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def spool_push(spool: Path, request: Request) -> Path:
    name = f"{time.time_ns():020d}-{os.getpid()}.json"
    temporary = spool / ("." + name)
    temporary.write_text(request.to_json())
    os.chmod(temporary, 0o600)
    final = spool / name
    temporary.rename(final)  # atomic: a later run never reads half a file
    return final


def drain(spool: Path, url: str, token: str, deadline: float) -> tuple[int, int]:
    """Send spooled pushes oldest first; returns (sent, rejected). Stops at the first one the
    server cannot take yet (raising Unreachable), so the order is kept."""
    sent = rejected = 0
    for path in sorted(spool.glob("[0-9]*.json")):
        try:
            request = Request.from_json(path.read_text())
        except (ValueError, KeyError, OSError):
            move_aside(path)
            rejected += 1
            continue
        try:
            send(url, token, request, deadline)
        except Rejected as exc:
            move_aside(path)
            rejected += 1
            report(f"a spooled push was refused and set aside in {spool / 'rejected'}: {exc}")
            continue
        path.unlink()
        sent += 1
    return sent, rejected


def move_aside(path: Path) -> None:
    aside = path.parent / "rejected"
    aside.mkdir(exist_ok=True)
    path.rename(aside / path.name)


def report(message: str) -> None:
    sys.stderr.write(f"metrics-ingest push: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metrics-ingest push",
        description="Push metrics to metrics-ingest from a cron job or batch script "
                    "(standard library only).",
        epilog="exit status: 0 pushed, 2 refused by the server, 75 kept in the spool")
    parser.add_argument("metrics", nargs="*", metavar="NAME=VALUE",
                        help="samples, e.g. slurm_pending_jobs=42")
    parser.add_argument("--url", default=os.environ.get("METRICS_URL"),
                        help="the service, e.g. https://metrics.example.org (env METRICS_URL)")
    parser.add_argument("--token", default=os.environ.get("METRICS_TOKEN"),
                        help="push token (prefer env METRICS_TOKEN or --token-file: a token "
                             "on the command line shows in the process list)")
    parser.add_argument("--token-file", type=Path, help="read the push token from this file")
    parser.add_argument("--source", required=True, help="the source (Prometheus text: the job)")
    parser.add_argument("--label", action="append", default=[], metavar="NAME=VALUE",
                        help="a label for every sample (repeatable)")
    parser.add_argument("--file", help="push a Prometheus text file instead; - for stdin")
    parser.add_argument("--remote-write", action="store_true",
                        help="send NAME=VALUE samples as Prometheus remote_write instead of "
                             "JSON (the source is ?source=, labels are series labels)")
    parser.add_argument("--add", action="store_true",
                        help="with --file: replace only the pushed families (POST), not the "
                             "whole group (PUT)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds to keep retrying before spooling (default 30)")
    parser.add_argument("--spool", type=Path, default=None,
                        help=f"spool directory (default {default_spool()})")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    token = args.token
    if args.token_file is not None:
        token = args.token_file.read_text().strip()
    if not args.url or not token:
        raise SystemExit("metrics-ingest push: --url and a token (--token, --token-file or "
                         "METRICS_TOKEN) are required")
    if bool(args.metrics) == bool(args.file):
        raise SystemExit("metrics-ingest push: give NAME=VALUE samples or --file, not both")
    now = time.time()
    labels = parse_pairs(args.label, "label")
    if args.file:
        text = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
        request = text_request(args.source, labels, text, not args.add, now)
    elif args.remote_write:
        request = remote_write_request(args.source, labels,
                                       numbers(parse_pairs(args.metrics, "sample")), now)
    else:
        request = metrics_request(args.source, labels, parse_pairs(args.metrics, "sample"),
                                  now)
    spool = args.spool or default_spool()
    deadline = time.monotonic() + args.timeout
    with locked(spool):
        try:
            sent, _ = drain(spool, args.url, token, deadline)
            if sent:
                report(f"sent {sent} spooled push(es)")
            send(args.url, token, request, deadline)
        except Rejected as exc:
            report(f"the server refused the push: {exc}")
            return EXIT_REJECTED
        except Unreachable as exc:
            kept = spool_push(spool, request)
            report(f"no acknowledgement within {args.timeout:g} s ({exc}); kept in {kept}")
            return EXIT_SPOOLED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
