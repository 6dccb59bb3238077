"""Reading a request body within the size limit, raw and (for gzip) inflated."""

from __future__ import annotations

import zlib

from aiohttp import web

from metrics_ingest.http.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

SUPPORTED_ENCODINGS = ("identity", "gzip", "x-gzip", "deflate")


def content_encoding(request: web.Request) -> str:
    declared = request.headers.get("Content-Encoding")
    if declared is None:
        return "identity"
    encoding = declared.strip().lower() or "identity"
    if encoding not in SUPPORTED_ENCODINGS:
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding[:32]!r} is not supported; send gzip or no encoding")
    return encoding


async def read_body(request: web.Request, limit: int) -> bytes:
    """The body, inflated if gzip/deflate; 413 as soon as either form passes `limit` bytes.

    The server runs with aiohttp's auto_decompress off so this is the only place that
    inflates, and it never inflates more than `limit` + 1 bytes (a gzip bomb stops there).
    """
    encoding = content_encoding(request)
    raw = await read_raw(request, limit)
    return raw if encoding == "identity" else inflate(raw, limit)


async def read_raw(request: web.Request, limit: int) -> bytes:
    """The body as sent, whatever its encoding; 413 past `limit` bytes."""
    stream = request.content
    if stream.is_eof():
        # The whole (small) body already arrived with the headers: no await, no iterator.
        raw = stream.read_nowait()
    else:
        if request.content_length is not None and request.content_length > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
        buffer = bytearray()
        async for chunk in stream.iter_any():
            buffer += chunk
            if len(buffer) > limit:
                raise PayloadTooLarge(f"request body is larger than {limit} bytes")
        raw = bytes(buffer)
    if len(raw) > limit:
        raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    return raw


def inflate(data: bytes, limit: int) -> bytes:
    """Inflate gzip (one or more members) or zlib data to at most `limit` bytes."""
    out = bytearray()
    remaining = data
    while remaining:
        # 32 + MAX_WBITS: accept a gzip or a zlib header, whichever the client sent.
        inflater = zlib.decompressobj(32 + zlib.MAX_WBITS)
        try:
            out += inflater.decompress(remaining, limit + 1 - len(out))
        except zlib.error as exc:
            raise BadRequest(f"body is not valid gzip/deflate data: {exc}") from None
        if len(out) > limit:
            raise PayloadTooLarge(f"inflated request body is larger than {limit} bytes")
        if not inflater.eof:
            raise BadRequest("gzip/deflate body is truncated")
        remaining = inflater.unused_data
    return bytes(out)
