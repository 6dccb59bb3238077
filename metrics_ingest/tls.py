"""HTTPS with the standard library's `ssl`: one server context whose certificate can be
loaded again in place (SIGHUP), so new connections get the new one and open ones go on."""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path


class Certificates:
    """The server's TLS context over a PEM certificate (chain) and key."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.cert = cert
        self.key = key
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.reload()

    def reload(self) -> None:
        """Load the files again; raises OSError or ValueError and keeps the certificate in
        use when they are missing, unreadable or do not match. They are tried on a scratch
        context first: a failed load can leave a context half changed."""
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                self.cert, self.key)
            self.context.load_cert_chain(self.cert, self.key)
        except ssl.SSLError as exc:
            raise ValueError(f"{self.cert} / {self.key}: {exc.reason or exc}") from None


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses: traffic that never leaves the machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
