"""systemd's readiness protocol (sd_notify(3)): READY=1, STOPPING=1 and STATUS= datagrams to
$NOTIFY_SOCKET, and the relay through which `serve --workers` learns that every worker serves."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import struct
import threading
from collections.abc import Mapping

log = logging.getLogger("metrics_ingest.sdnotify")

SEND_TIMEOUT_SECONDS = 5.0
CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid
MESSAGE_BYTES = 4096


def socket_address(address: str) -> str:
    """A NOTIFY_SOCKET value as connect() takes it: `@name` is in Linux's abstract namespace."""
    return "\0" + address[1:] if address.startswith("@") else address


def encode(fields: Mapping[str, str]) -> bytes:
    # One assignment a line: a newline inside a value would start a bogus assignment.
    return "\n".join(f"{name}={' '.join(value.splitlines())}"
                     for name, value in fields.items()).encode()


def decode(message: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in message.decode("utf-8", "replace").splitlines():
        name, equals, value = line.partition("=")
        if equals:
            fields[name] = value
    return fields


class Notifier:
    """Sends sd_notify messages to one socket: NOTIFY_SOCKET's value, a path or `@abstract`.

    Without an address (not started by systemd with Type=notify) every call does nothing. A
    failed send is logged and otherwise ignored, as sd_notify(3) does: telling systemd is never
    a reason to stop serving. `fields` go into every message (a worker's WORKER=<n>).
    """

    def __init__(self, address: str | None, fields: Mapping[str, str] | None = None) -> None:
        if address is not None and not address.startswith(("/", "@")):
            log.warning("NOTIFY_SOCKET=%s is neither a path nor @name: not notifying", address)
            address = None
        self.address = address
        self.fields = dict(fields or {})

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Notifier:
        return cls(environ.get("NOTIFY_SOCKET") or None)

    def send(self, **fields: str) -> bool:
        """One datagram of `fields` and this notifier's own; False if none was sent."""
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.settimeout(SEND_TIMEOUT_SECONDS)
                sock.connect(socket_address(self.address))
                sock.send(encode({**fields, **self.fields}))
        except OSError as exc:
            log.warning("could not notify %s: %s", self.address, exc)
            return False
        return True

    def ready(self, status: str) -> None:
        """The service serves: systemd finishes starting it (and starts what waits on it)."""
        self.send(READY="1", STATUS=status)

    def stopping(self, status: str) -> None:
        self.send(STOPPING="1", STATUS=status)


class ReadinessRelay:
    """`serve --workers N` as systemd's main process: the workers notify this socket as they
    would systemd, each message carrying WORKER=<n>; once every worker has sent READY=1,
    `upstream` gets READY=1 with `status`, once (a worker restarted later changes nothing).

    Only datagrams from this process's own user count (the kernel attaches the sender's
    credentials), so another local user cannot declare the service ready.
    """

    def __init__(self, upstream: Notifier, workers: int, status: str) -> None:
        self.upstream = upstream
        self.status = status
        self.waiting = {str(index) for index in range(1, workers + 1)}
        self.ready = threading.Event()
        self.closing = False
        # Abstract: no file to create in a read-only sandbox or to clean up; unguessable.
        self.address = f"@metrics-ingest/{os.getpid()}/{secrets.token_hex(8)}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(socket_address(self.address))
        self.thread = threading.Thread(target=self._relay, name="sd-notify-relay", daemon=True)
        self.thread.start()

    def _relay(self) -> None:
        while True:
            try:
                message, ancillary, _, _ = self.sock.recvmsg(
                    MESSAGE_BYTES, socket.CMSG_SPACE(CREDENTIALS.size))
            except OSError:
                return
            if self.closing:
                return
            if sender_uid(ancillary) != os.getuid():
                continue
            fields = decode(message)
            if fields.get("READY") == "1":
                self.waiting.discard(fields.get("WORKER", ""))
            if not self.waiting and not self.ready.is_set():
                self.ready.set()
                self.upstream.ready(self.status)

    def close(self) -> None:
        """Stop relaying (a worker's later message is refused, and it logs that)."""
        self.closing = True
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked recvmsg
        self.thread.join()
        self.sock.close()


def sender_uid(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            _pid, uid, _gid = CREDENTIALS.unpack(data[:CREDENTIALS.size])
            return int(uid)
    return None
