"""Parsing a push body: inflating it within the limit, then the format's parser; inline for
a small body, in a worker process for a big one, so that no body holds up the event loop.

A worker process, not a thread: parsing is Python code, and a thread parsing 5 MB would hold
the GIL in 5 ms slices against every request the loop serves (bench/README.md, W11).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import zlib
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from metrics_ingest.model import BodyRefused, Parsed
from metrics_ingest.processes import wait_for_exit

# Bodies up to this size (or a compressed one up to an eighth of it) are parsed inline: a
# worker's round trip costs about a millisecond, a small push's whole parse much less.
INLINE_BYTES = 256 * 1024
SUPPORTED_ENCODINGS = ("identity", "gzip", "x-gzip", "deflate")

Parse = Callable[[bytes, Any, float], Parsed]


def inflate(data: bytes, limit: int) -> bytes:
    """Inflate gzip (one or more members) or zlib data to at most `limit` bytes: a gzip bomb
    stops at limit + 1 bytes, never inflated whole."""
    out = bytearray()
    remaining = data
    while remaining:
        # 32 + MAX_WBITS: accept a gzip or a zlib header, whichever the client sent.
        inflater = zlib.decompressobj(32 + zlib.MAX_WBITS)
        try:
            out += inflater.decompress(remaining, limit + 1 - len(out))
        except zlib.error as exc:
            raise BodyRefused(400, f"body is not valid gzip/deflate data: {exc}") from None
        if len(out) > limit:
            raise BodyRefused(413, f"inflated request body is larger than {limit} bytes")
        if not inflater.eof:
            raise BodyRefused(400, "gzip/deflate body is truncated")
        remaining = inflater.unused_data
    return bytes(out)


def parse_body(parse: Parse, raw: bytes, encoding: str, limit: int, params: Any,
               now: float) -> Parsed:
    """What a worker process runs (and the inline path too): module-level, so it pickles."""
    body = raw if encoding == "identity" else inflate(raw, limit)
    return parse(body, params, now)


def start_worker(server_pid: int) -> None:
    """In a worker: yield the CPU to the server's own process, which answers small pushes,
    and exit when the server does. (A worker waits on a queue whose write end it holds
    itself, so it would outlive a SIGKILLed server; and the forkserver lives while any of
    its children does.)"""
    os.nice(10)
    threading.Thread(target=exit_with, args=(server_pid,), daemon=True,
                     name="exit-with-server").start()


def exit_with(pid: int) -> None:
    """Block until process `pid` has exited, then end this process at once."""
    wait_for_exit(pid)
    os._exit(0)


# The forkserver (here and in query_pool.py) listens on <TMPDIR>/pymp-XXXXXXXX/listener-
# XXXXXXXX, and a Unix socket's path holds at most 107 bytes (measured: a 75-byte TMPDIR
# works, 76 fails).
SOCKET_PATH_BYTES = 107
FORKSERVER_SUFFIX = len("/pymp-XXXXXXXX/listener-XXXXXXXX")
LONGEST_TMPDIR_BYTES = SOCKET_PATH_BYTES - FORKSERVER_SUFFIX


def holds_sockets(directory: str) -> bool:
    """Whether the forkserver can listen in `directory` as its TMPDIR."""
    return len(os.fsencode(directory)) <= LONGEST_TMPDIR_BYTES


class ParsePool:
    """Worker processes for big bodies, one per core but one (that core is the event loop's),
    at a lower priority, started on first use (forkserver: they do not inherit the server's
    threads), shut down with the app."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or max(1, (os.cpu_count() or 1) - 1)
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _pool(self) -> ProcessPoolExecutor:
        """The executor, made on first use (thread-safe: `_lock`)."""
        with self._lock:
            if self._executor is None:
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload(["metrics_ingest.parsing",
                                                "metrics_ingest.formats"])
                self._executor = ProcessPoolExecutor(self.workers, mp_context=context,
                                                     initializer=start_worker,
                                                     initargs=(os.getpid(),))
            return self._executor

    def warm(self) -> None:
        """Start the worker processes now (on a thread: starting one takes a fraction of a
        second), so the first big body does not wait for them."""
        pool = self._pool()
        for future in [pool.submit(os.getpid) for _ in range(self.workers)]:
            future.result()

    async def parse(self, parse: Parse, raw: bytes, encoding: str, limit: int, params: Any,
                    now: float, compressed: bool = False) -> Parsed:
        """Parse inline or in a worker by size (a compressed body, by Content-Encoding or by
        its format like remote_write's snappy, counts eight times); raises what the parser
        raises."""
        packed = compressed or encoding != "identity"
        big = len(raw) * (8 if packed else 1) > INLINE_BYTES
        if not big:
            return parse_body(parse, raw, encoding, limit, params, now)
        # Submitted from a thread: submit() starts a worker process when none is idle yet,
        # which must not happen on the event loop.
        submitted = await asyncio.to_thread(self._pool().submit, parse_body, parse, raw,
                                            encoding, limit, params, now)
        return await asyncio.wrap_future(submitted)

    async def close(self) -> None:
        if self._executor is not None:
            executor, self._executor = self._executor, None
            await asyncio.to_thread(executor.shutdown, True, cancel_futures=True)
