"""Bearer tokens: parsing the Authorization header, and the policy that says who a token is."""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path

from metrics_ingest.tokens import Principal, TokensFileError, digest_of, load_tokens_file

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


class AuthPolicy:
    """Who may push, read and administer: every accepted token as a `Principal`, by the
    SHA-256 digest of the token, with the tokens file's entries swapped in on reload.

    A request's token is hashed once and looked up: one dict lookup however many tokens
    there are (a 1,000-entry file costs W1 nothing measurable; bench/README.md). Looking up
    digests, not tokens, reveals nothing of a token through timing: a probe can only match a
    digest by being the token.
    """

    def __init__(self, push_tokens: Iterable[str], read_token: str | None = None,
                 admin_token: str | None = None, tokens_file: Path | None = None) -> None:
        fixed: dict[bytes, Principal] = {}
        for number, token in enumerate(push_tokens, 1):
            name = "METRICS_AUTH_TOKEN" + (f"[{number}]" if number > 1 else "")
            # The unscoped push token is the stronger credential: it reads too.
            fixed.setdefault(digest_of(token), Principal(name, frozenset(("push", "read"))))
        if read_token is not None:
            fixed.setdefault(digest_of(read_token),
                             Principal("METRICS_READ_TOKEN", frozenset(("read",))))
        if admin_token is not None:
            fixed.setdefault(digest_of(admin_token),
                             Principal("METRICS_ADMIN_TOKEN", frozenset(("admin", "read"))))
        self.fixed = fixed
        self.read_token_set = read_token is not None
        self.tokens_file = tokens_file
        self.principals: dict[bytes, Principal] = dict(fixed)
        self.reads_public = not self.read_token_set
        self.file_signature: tuple[int, int, int] | None = None
        if tokens_file is not None:
            self.install(load_tokens_file(tokens_file), signature_of(tokens_file))

    def identify(self, token: str | None) -> Principal | None:
        return None if token is None else self.principals.get(digest_of(token))

    def install(self, loaded: dict[bytes, Principal],
                signature: tuple[int, int, int] | None) -> None:
        """Use a freshly read tokens file; a token whose rate did not change keeps its
        bucket (a reload does not hand out a fresh burst)."""
        previous = {p.name: p for p in self.principals.values()}
        for principal in loaded.values():
            old = previous.get(principal.name)
            if old is not None and old.rate == principal.rate:
                principal.limiter = old.limiter
        self.principals = {**loaded, **self.fixed}
        # Reads stay public unless a read token exists (an admin token alone does not lock
        # the dashboards out).
        self.reads_public = not self.read_token_set and not any(
            p.reader for p in loaded.values())
        self.file_signature = signature

    def reload(self, force: bool = False) -> bool | None:
        """Read the tokens file again if it changed (or `force`). True: reloaded; False:
        unchanged; None: no file. Raises TokensFileError and keeps the tokens in use."""
        if self.tokens_file is None:
            return None
        try:
            signature = signature_of(self.tokens_file)
        except OSError as exc:
            raise TokensFileError(f"cannot read {self.tokens_file}: "
                                  f"{exc.strerror or exc}") from None
        if not force and signature == self.file_signature:
            return False
        try:
            loaded = load_tokens_file(self.tokens_file)
        except TokensFileError:
            self.file_signature = signature  # said once; the next change is read again
            raise
        self.install(loaded, signature)
        return True


def signature_of(path: Path) -> tuple[int, int, int]:
    """What changes when a file is edited or replaced: inode, size, mtime in ns."""
    info = path.stat()
    return info.st_ino, info.st_size, info.st_mtime_ns


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
