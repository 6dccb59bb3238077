"""Reading a request body as sent, within the size limit, and the encoding it declares
(parsing.py inflates it)."""

from __future__ import annotations

from aiohttp import web

from metrics_ingest.http.errors import ClientGone, PayloadTooLarge, UnsupportedMediaType
from metrics_ingest.parsing import SUPPORTED_ENCODINGS


def content_encoding(request: web.Request) -> str:
    declared = request.headers.get("Content-Encoding")
    if declared is None:
        return "identity"
    encoding = declared.strip().lower() or "identity"
    if encoding not in SUPPORTED_ENCODINGS:
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding[:32]!r} is not supported; send gzip or no encoding")
    return encoding


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
        try:
            async for chunk in stream.iter_any():
                buffer += chunk
                if len(buffer) > limit:
                    raise PayloadTooLarge(f"request body is larger than {limit} bytes")
        except (ConnectionResetError, RuntimeError):  # aiohttp's words for a closed connection
            raise ClientGone("the client closed the connection before its body arrived") \
                from None
        raw = bytes(buffer)
    if len(raw) > limit:
        raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    return raw
