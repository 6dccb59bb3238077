"""Query parameters: refusing unknown ones by name, and reading booleans."""

from __future__ import annotations

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
