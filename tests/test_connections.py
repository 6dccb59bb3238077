"""Connections are bounded, against the real CLI server: idle ones are closed after the
keep-alive timeout and make room for new clients at the bound, slow headers get a 408, and the
errors aiohttp answers itself are SPEC's JSON."""

from __future__ import annotations

import json
import resource
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from tests.conftest import TOKEN, Service

pytestmark = pytest.mark.slow


def connect(service: Service, timeout: float = 10) -> socket.socket:
    host, port = service.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    return sock


def answer(sock: socket.socket, seconds: float = 10) -> tuple[int, bytes]:
    """Read until the server closes or a whole response (by Content-Length) arrived."""
    sock.settimeout(seconds)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), None)
        if length is not None and len(body) >= length:
            break
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
    return status, data.partition(b"\r\n\r\n")[2]


def get(service: Service, path: str = "/healthz") -> int:
    sock = connect(service)
    try:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        return answer(sock)[0]
    finally:
        sock.close()


@contextmanager
def file_limit(soft: int) -> Iterator[None]:
    """This process's own limit, high enough for the idle clients it opens."""
    old = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(old[0], soft), old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, old)


def test_idle_connections_make_room_under_a_low_file_limit(
        service_factory: Callable[..., Service]) -> None:
    # The server runs with `ulimit -n 1024` (soft and hard, so it cannot raise it).
    service = service_factory(limit_files=1024)
    idle: list[socket.socket] = []
    with file_limit(4096):
        try:
            for _ in range(1100):
                idle.append(connect(service))
            assert get(service) == 200  # a fresh client is served
            status = push(service)
            assert status == 200
        finally:
            for sock in idle:
                sock.close()
    assert "refused a connection" not in service.log()  # idle ones made room instead


def push(service: Service) -> int:
    body = json.dumps({"source": "fresh", "metrics": {"a": 1}}).encode()
    sock = connect(service)
    try:
        sock.sendall(b"POST /ingest HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        return answer(sock)[0]
    finally:
        sock.close()


def test_busy_connections_are_not_closed_and_newcomers_get_503(
        service_factory: Callable[..., Service]) -> None:
    service = service_factory(args=("--max-connections", "16", "--body-timeout", "30"))
    busy = []
    try:
        for _ in range(16):  # each mid-request: headers sent, the body still coming
            sock = connect(service)
            sock.sendall(b"POST /ingest HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                         + TOKEN.encode() + b"\r\nContent-Length: 50\r\n\r\n{")
            busy.append(sock)
        newcomer = connect(service)
        status, body = answer(newcomer, 5)
        newcomer.close()
        assert status == 503
        assert json.loads(body)["error"] == "too many open connections; retry shortly"
        for sock in busy:  # the busy ones are still served
            sock.sendall(b'"source":"b","metrics":{"a":1}}'.ljust(49))
        assert [answer(sock)[0] for sock in busy] == [200] * 16
    finally:
        for sock in busy:
            sock.close()


def test_slow_headers_get_408_and_idle_ones_close(
        service_factory: Callable[..., Service]) -> None:
    service = service_factory(args=("--header-timeout", "1", "--keepalive-timeout", "2"))
    with connect(service) as slow:
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # ... and the rest never comes
        status, body = answer(slow, 10)
    assert status == 408
    assert "did not arrive within 1 s" in json.loads(body)["error"]
    with connect(service) as idle:
        started = time.monotonic()
        assert idle.recv(10) == b""  # closed by the server, after the keep-alive timeout
        assert 1.5 < time.monotonic() - started < 9


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431),
    (b"NOT HTTP AT ALL\r\n\r\n", 400),
])
def test_aiohttps_own_errors_are_json(service_factory: Callable[..., Service],
                                      request_bytes: bytes, status: int) -> None:
    service = service_factory()
    with connect(service) as sock:
        sock.sendall(request_bytes)
        got, body = answer(sock)
    assert got in (status, 400)
    error = json.loads(body)
    assert error["status"] == "error"
    assert "Traceback" not in error["error"]
