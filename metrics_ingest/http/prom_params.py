"""Request parameters of Prometheus's query API: a form (the query string, or a
form-encoded POST body, which wins), times as Unix seconds or RFC 3339, durations as seconds
or Prometheus durations (`1h30m`), each error worded as Prometheus words it."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta, timezone

from aiohttp import web
from multidict import MultiDict

from metrics_ingest.promql.values import BadData

FLOAT_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
RFC3339_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})")
DURATION_RE = re.compile(
    r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?")
DURATION_MS = (365 * 86_400_000, 7 * 86_400_000, 86_400_000, 3_600_000, 60_000, 1000, 1)
# What Prometheus takes for "no start" and "no end" (its minTime and maxTime), in ms.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_TIME = -9_223_309_901_257_974_000
MAX_TIME = 9_223_309_901_257_974_000


async def read_form(request: web.Request) -> MultiDict[str]:
    """The parameters: a form-encoded POST body's first, then the query string's."""
    form: MultiDict[str] = MultiDict()
    if request.method == "POST" and request.content_type == "application/x-www-form-urlencoded":
        posted = await request.post()
        form.extend((key, value) for key, value in posted.items() if isinstance(value, str))
    form.extend(request.query)
    return form


def parse_time(raw: str) -> int:
    """A time in ms: Unix seconds (milliseconds rounded) or RFC 3339."""
    if FLOAT_RE.fullmatch(raw):
        seconds = float(raw)
        if math.isfinite(seconds) and abs(seconds) < 9.2e15:
            whole = math.trunc(seconds)
            fraction = seconds - whole
            return whole * 1000 + int(math.copysign(math.floor(abs(fraction) * 1000 + 0.5),
                                                    fraction))
    match = RFC3339_RE.fullmatch(raw)
    if match is not None:
        year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
        zone = match.group(8)
        offset = timedelta() if zone == "Z" else (
            (1 if zone[0] == "+" else -1) * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:])))
        try:
            moment = datetime(year, month, day, hour, minute, second, tzinfo=timezone(offset))
        except ValueError:
            pass
        else:
            nanos = int((match.group(7) or ".0")[1:].ljust(9, "0"))
            return (moment - EPOCH) // timedelta(seconds=1) * 1000 + nanos // 1_000_000
    raise BadData(f'cannot parse "{raw}" to a valid timestamp')


def time_param(form: MultiDict[str], name: str, default: int) -> int:
    raw = form.get(name, "")
    if not raw:
        return default
    try:
        return parse_time(raw)
    except BadData as exc:
        raise BadData(f'invalid parameter "{name}": Invalid time value for \'{name}\': '
                      f"{exc.message}") from None


def parse_duration(raw: str) -> int:
    """A duration in ms: seconds (a float) or a Prometheus duration."""
    if FLOAT_RE.fullmatch(raw):
        seconds = float(raw)
        if abs(seconds * 1e9) > 2**63:
            raise BadData(f'cannot parse "{raw}" to a valid duration. It overflows int64')
        return int(seconds * 1000)
    match = DURATION_RE.fullmatch(raw)
    if raw and match is not None and any(match.groups()):
        return sum(int(part) * unit for part, unit in zip(match.groups(), DURATION_MS,
                                                          strict=True) if part)
    raise BadData(f'cannot parse "{raw}" to a valid duration')


def invalid(name: str, exc: BadData) -> BadData:
    return BadData(f'invalid parameter "{name}": {exc.message}')
