"""API errors carry their HTTP status; `render_failure` gives them all SPEC's error shape."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson
from aiohttp import web

from metrics_ingest.model import FieldError

log = logging.getLogger("metrics_ingest.errors")


class ApiError(Exception):
    """An error answer: `status`, a message naming what was wrong, optional field errors."""

    status = 500
    reason = "error"

    def __init__(
        self,
        message: str,
        *,
        errors: Sequence[FieldError] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.errors = list(errors)
        self.headers = dict(headers or {})


class BadRequest(ApiError):
    status = 400


class Unauthorized(ApiError):
    status = 401

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer realm="metrics-ingest"'})


class Forbidden(ApiError):
    """A valid token that may not do this (a role it lacks, a source outside its scope)."""

    status = 403


class RequestTimeout(ApiError):
    status = 408


class ClientGone(ApiError):
    """The client went away mid-request; nobody reads the answer, but it is counted."""

    status = 400


class PayloadTooLarge(ApiError):
    status = 413


class UnsupportedMediaType(ApiError):
    status = 415


class Unprocessable(ApiError):
    """A well-formed push the service will not take as it is (a series budget): clients
    must not retry it unchanged (not 408 or 429)."""

    status = 422


class TooManyRequests(ApiError):
    status = 429

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, retry_after))})


class ServiceUnavailable(ApiError):
    status = 503

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        # A trailing newline: a curl at a terminal prints the answer on a line of its own.
        body=orjson.dumps(body) + b"\n", status=status, content_type="application/json",
        headers=headers,
    )


# Extra keys some clients read from an error body (InfluxDB 2's `code` and `message`).
ErrorFields = Callable[[int, str], dict[str, Any]]


def error_response(
    status: int,
    message: str,
    errors: Sequence[FieldError] = (),
    headers: Mapping[str, str] | None = None,
    fields: ErrorFields | None = None,
) -> web.Response:
    body: dict[str, Any] = {"status": "error", "error": message}
    if fields is not None:
        body.update(fields(status, message))
    if errors:
        body["errors"] = [{"path": error.path, "error": error.error} for error in errors]
    return json_response(body, status=status, headers=headers)


# aiohttp's own errors (no route, wrong method, body too large) get plain words of ours.
HTTP_MESSAGES = {
    404: "no such endpoint",
    405: "method not allowed",
    413: "request body too large",
}


def render_failure(request: web.Request, exc: ApiError | web.HTTPException,
                   fields: ErrorFields | None = None) -> web.Response:
    """SPEC's error shape for an API error or one of aiohttp's (404, 405, ...)."""
    if isinstance(exc, ApiError):
        return error_response(exc.status, exc.message, exc.errors, exc.headers, fields)
    if exc.status >= 400:
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        message = HTTP_MESSAGES.get(exc.status, exc.reason.lower())
        if exc.status == 405:
            message = f"method {request.method} not allowed; allowed: {headers.get('Allow', '')}"
        return error_response(exc.status, message, headers=headers, fields=fields)
    raise exc  # a redirect or other non-error answer: let aiohttp send it
