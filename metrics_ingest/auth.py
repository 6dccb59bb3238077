"""Bearer tokens: parsing the Authorization header and comparing in constant time."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger("metrics_ingest.auth")

TOKEN_FILE_NAME = "auth-token"


def presented_token(header: str | None, schemes: Iterable[str] = ("bearer",)) -> str | None:
    """The token of `Authorization: <scheme> <token>`; the scheme is case-insensitive."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() not in schemes or not token.strip():
        return None
    return token.strip()


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def token_matches(candidate: str | None, accepted: Iterable[str]) -> bool:
    """Compare against every accepted token, always all of them, on fixed-length digests.

    Neither the position of the first differing byte, the token's length, nor which entry of the
    list matched changes the time taken.
    """
    if candidate is None:
        return False
    probe = _digest(candidate)
    matched = False
    for token in accepted:
        matched |= hmac.compare_digest(probe, _digest(token))
    return matched


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
