"""The listening sockets of `serve --workers N`, bound by the supervisor before any worker
starts: one set per worker, all sharing the port (SO_REUSEPORT), each handed to its worker.

The kernel spreads new connections over the sockets listening at the time. Were each worker
to bind its own on starting, the first one up would get every connection made before the
others listen (a load balancer's or a benchmark's whole pool, kept alive for good); bound
ahead, a connection meant for a worker still starting waits in that socket's backlog. The
supervisor closes its copies once the worker has them, so a worker that dies takes its
sockets with it and the kernel sends new connections to the others. A worker started again
gets sockets bound but not yet listening: it listens once it serves (asyncio's
create_server calls listen), so connections do not queue behind a worker that may fail to
start (the database down, say) and be reset when it exits."""

from __future__ import annotations

import socket

BACKLOG = 128  # as aiohttp's own sites


def bind_listeners(host: str, port: int, listen: bool = True) -> list[socket.socket]:
    """A socket on every address `host` resolves to, bound to `port` and listening unless
    `listen` is false; port 0 takes a free port, the same for every address. OSError if any
    address cannot be bound."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:  # as asyncio: "::" leaves 0.0.0.0 to its own socket
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(sockets) > 1:
                address = (address[0], bound_port(sockets[0]), *address[2:])
            try:
                sock.bind(address)
            except OSError as exc:  # (the errno's words alone do not say which address)
                raise OSError(exc.errno, f"cannot listen on {host} port {port}: "
                              f"{exc.strerror}") from exc
            if listen:
                sock.listen(BACKLOG)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def bound_port(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])
