"""Query parameters: refusing unknown ones by name, and reading booleans."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from metrics_ingest.http.errors import BadRequest
from metrics_ingest.model import shorten

TRUE = frozenset({"true", "1", "yes"})
FALSE = frozenset({"false", "0", "no"})


def only_params(query: Mapping[str, str], known: frozenset[str]) -> bool:
    """True when every parameter is a known one; else a 400 naming the unknown ones."""
    unknown = sorted({name for name in query if name not in known})
    if unknown:
        names = ", ".join(shorten(name, 32) for name in unknown[:5])
        raise BadRequest(f"unknown query parameter(s): {names}; this endpoint takes "
                         f"{', '.join(sorted(known)) or 'none'}")
    return True


DURATION_RE = re.compile(r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?"
                         r"(?:(\d+)s)?(?:(\d+)ms)?")
DURATION_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)


def parse_duration(name: str, raw: str) -> float:
    """Seconds, from Prometheus's duration syntax (`90s`, `1h30m`, `7d`) or plain seconds;
    a 400 naming the parameter otherwise. Zero is allowed (it means: no limit)."""
    text = raw.strip()
    try:
        seconds = float(text)
    except ValueError:
        match = DURATION_RE.fullmatch(text)
        if not text or match is None:
            raise BadRequest(f"{name} must be a duration such as 90s, 15m, 1h30m or 7d, or "
                             f"seconds; got {shorten(raw, 32)!r}") from None
        seconds = sum(int(part) * unit for part, unit in zip(match.groups(), DURATION_UNITS,
                                                              strict=True) if part)
    if not math.isfinite(seconds) or seconds < 0:
        raise BadRequest(f"{name} must not be negative, got {shorten(raw, 32)!r}")
    return seconds


def boolean_param(query: Mapping[str, str], name: str, default: bool = False) -> bool:
    raw = query.get(name)
    if raw is None:
        return default
    text = raw.strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise BadRequest(f"{name} must be true or false, got {shorten(raw, 32)!r}")
