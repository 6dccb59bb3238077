"""Scoped tokens: the METRICS_TOKENS_FILE format, read into `Principal`s, and the per-token
request rate limit."""

from __future__ import annotations

import fnmatch
import hashlib
import math
import os
import re
import stat
import time
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

ROLES = ("push", "read", "admin")
HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
MAX_DECISIONS = 4096  # sources remembered per token as allowed or not


class TokensFileError(ValueError):
    """The tokens file is unreadable or invalid; the message names the entry and field."""


class RateLimiter:
    """A token bucket: `rate` requests per second, bursts of up to twice that."""

    __slots__ = ("burst", "level", "rate", "stamp")

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.burst = 2 * rate
        self.level = self.burst
        self.stamp = time.monotonic()

    def wait(self, now: float) -> float:
        """0 when one more request may go now (it is counted), else the seconds until one
        may."""
        level = self.level + (now - self.stamp) * self.rate
        if level > self.burst:
            level = self.burst
        self.stamp = now
        if level >= 1:
            self.level = level - 1
            return 0.0
        self.level = level
        return (1 - level) / self.rate


class SourceScope:
    """The glob patterns of the sources a token may write (`fnmatch`, case-sensitive)."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)
        self._match = re.compile("|".join(fnmatch.translate(p) for p in self.patterns)).match
        self._decided: dict[str, bool] = {}

    def allows(self, source: str) -> bool:
        decided = self._decided.get(source)
        if decided is None:
            decided = self._match(source) is not None
            if len(self._decided) < MAX_DECISIONS:
                self._decided[source] = decided
        return decided


@dataclass(eq=False)
class Principal:
    """Who a token is: its name (for logs and self-metrics, never the secret), its roles, the
    sources it may write (None: any) and its rate limit (None: none)."""

    name: str
    roles: frozenset[str]
    scope: SourceScope | None = None
    limiter: RateLimiter | None = None
    rate: float | None = field(default=None)
    reader: bool = False  # the file gave it the read role (admin reads too, without it)

    def may(self, role: str) -> bool:
        return role in self.roles

    def forbidden(self, sources: Iterable[str]) -> str | None:
        """The first of `sources` this token may not write, or None."""
        scope = self.scope
        if scope is None:
            return None
        for source in sources:
            if not scope.allows(source):
                return source
        return None


# On a request: the token's Principal, set once its auth passed (http/endpoint.py).
PRINCIPAL = web.RequestKey("principal", Principal)


def digest_of(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def load_tokens_file(path: Path) -> dict[bytes, Principal]:
    """The file's tokens by SHA-256 digest. Raises TokensFileError naming the entry
    (`token[3]`, counted from 1, or its name) and the field at fault."""
    try:
        with path.open("rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            document = tomllib.load(handle)
    except OSError as exc:
        raise TokensFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise TokensFileError(f"{path} is not valid TOML: {exc}") from None
    unknown = set(document) - {"token"}
    if unknown:
        raise TokensFileError(f"{path}: unknown table(s) {', '.join(sorted(unknown))}; "
                              "tokens are [[token]] entries")
    entries = document.get("token", [])
    if not isinstance(entries, list):
        raise TokensFileError(f"{path}: `token` must be an array of tables ([[token]])")
    principals: dict[bytes, Principal] = {}
    names: set[str] = set()
    for number, entry in enumerate(entries, 1):
        where = f"{path}: token[{number}]"
        if not isinstance(entry, dict):
            raise TokensFileError(f"{where} must be a table")
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            raise TokensFileError(f"{where}: `name` must be a non-empty string")
        where = f"{path}: token {name!r}"
        if name in names:
            raise TokensFileError(f"{where}: the name is used twice")
        names.add(name)
        digest = entry_digest(entry, where, mode)
        if digest in principals:
            raise TokensFileError(f"{where}: the same token as {principals[digest].name!r}")
        principals[digest] = principal_of(entry, name, where)
    return principals


def entry_digest(entry: dict[str, Any], where: str, mode: int) -> bytes:
    unknown = set(entry) - {"name", "sha256", "token", "roles", "sources", "rate"}
    if unknown:
        raise TokensFileError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    if ("sha256" in entry) == ("token" in entry):
        raise TokensFileError(f"{where}: give exactly one of `sha256` and `token`")
    if "sha256" in entry:
        value = entry["sha256"]
        if not isinstance(value, str) or not HEX_DIGEST.fullmatch(value.lower()):
            raise TokensFileError(f"{where}: `sha256` must be 64 hex digits "
                                  "(printf %s TOKEN | sha256sum)")
        return bytes.fromhex(value)
    token = entry["token"]
    if not isinstance(token, str) or len(token) < 16:
        raise TokensFileError(f"{where}: `token` must be a string of at least 16 characters")
    if stat.S_IMODE(mode) & 0o077:
        raise TokensFileError(f"{where}: the file holds a plain `token` but is readable by "
                              f"others (mode {stat.S_IMODE(mode):04o}); chmod 600 it, or "
                              "give `sha256` instead")
    return digest_of(token)


def principal_of(entry: dict[str, Any], name: str, where: str) -> Principal:
    roles = entry.get("roles", ["push"])
    if (not isinstance(roles, list) or not roles
            or not all(isinstance(role, str) and role in ROLES for role in roles)):
        raise TokensFileError(f"{where}: `roles` must be a non-empty list of "
                              f"{', '.join(ROLES)}")
    sources = entry.get("sources")
    scope = None
    if sources is not None:
        if (not isinstance(sources, list) or not sources
                or not all(isinstance(s, str) and s for s in sources)):
            raise TokensFileError(f"{where}: `sources` must be a non-empty list of glob "
                                  "patterns (leave it out for every source)")
        scope = SourceScope(sources)
    rate = entry.get("rate")
    limiter = None
    if rate is not None:
        if (isinstance(rate, bool) or not isinstance(rate, int | float)
                or not math.isfinite(rate) or rate <= 0):
            raise TokensFileError(f"{where}: `rate` must be a positive number of requests "
                                  "per second")
        limiter = RateLimiter(float(rate))
    granted = set(roles)
    if "admin" in granted:
        granted.add("read")
    return Principal(name, frozenset(granted), scope, limiter,
                     None if rate is None else float(rate), reader="read" in roles)
