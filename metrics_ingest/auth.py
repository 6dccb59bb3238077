"""Bearer tokens: parsing the Authorization header and comparing in constant time."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

TOKEN_FILE_NAME = "auth-token"


def presented_token(header: str | None, schemes: Iterable[str] = ("bearer",)) -> str | None:
    """The token of `Authorization: <scheme> <token>`; the scheme is case-insensitive."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if not token or scheme.lower() not in schemes:
        return None
    return token


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def digest_matches(candidate: str | None, accepted: Iterable[bytes]) -> bool:
    """Compare against every accepted token digest, always all of them.

    Comparing fixed-length digests, neither the position of the first differing byte, the
    token's length, nor which entry of the list matched changes the time taken.
    """
    if candidate is None:
        return False
    probe = digest(candidate)
    matched = False
    for expected in accepted:
        matched |= hmac.compare_digest(probe, expected)
    return matched


@dataclass(frozen=True)
class AuthPolicy:
    """Who may push and who may read, as token digests computed once at start.

    Tokens that passed the constant-time check are remembered (a few at most), so a pusher's
    next request is one dict lookup: the check costs ~5 us per request inside the busy server
    (bench/README.md). A lookup can only hit with the exact accepted token, and a dict compares
    strings only after a full 64-bit salted hash match, so it reveals nothing about a wrong one.
    """

    push: tuple[bytes, ...]
    read: tuple[bytes, ...] | None  # None: reads are public
    accepted_push: dict[str, bool] = field(default_factory=dict, compare=False)
    accepted_read: dict[str, bool] = field(default_factory=dict, compare=False)

    MAX_REMEMBERED: ClassVar[int] = 64

    @classmethod
    def from_tokens(cls, push_tokens: Iterable[str], read_token: str | None) -> AuthPolicy:
        push = tuple(digest(token) for token in push_tokens)
        # A push token is the stronger credential: it reads too.
        read = None if read_token is None else (digest(read_token), *push)
        return cls(push, read)

    def may_push(self, token: str | None) -> bool:
        return token in self.accepted_push or self._check(token, self.push, self.accepted_push)

    def may_read(self, token: str | None) -> bool:
        return (self.read is None or token in self.accepted_read
                or self._check(token, self.read, self.accepted_read))

    def _check(self, token: str | None, digests: tuple[bytes, ...],
               accepted: dict[str, bool]) -> bool:
        """The constant-time check, for a token not remembered yet (callers look there first)."""
        if token is None or not digest_matches(token, digests):
            return False
        if len(accepted) < self.MAX_REMEMBERED:
            accepted[token] = True
        return True


def influx_credentials(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """What Influx clients send: `Bearer` or `Token <t>` (v2, influxdb-client), Basic auth
    with the token as password (Telegraf's v1 output), or the v1 `?p=` parameter."""
    authorization = headers.get("Authorization")
    token = presented_token(authorization, ("bearer", "token"))
    if token is not None:
        return token
    basic = presented_token(authorization, ("basic",))
    if basic is not None:
        try:
            decoded = base64.b64decode(basic, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return query.get("p") or None


def remembered_token(db_path: Path) -> tuple[str, Path, bool]:
    """The generated push token stored next to the database, creating it (mode 0600) if missing.

    Returns (token, file, created). The token itself is never logged, only the file's path.
    """
    path = db_path.parent / TOKEN_FILE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        token = path.read_text(encoding="utf-8").strip()
        if not token:
            raise ValueError(f"{path} is empty; delete it to generate a new token") from None
        return token, path, False
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    return token, path, True
