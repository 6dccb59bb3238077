"""The wrapper every request goes through (CORS, method, auth, errors, counting), and the
`Endpoint` rows of the routing table."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from aiohttp import web

from metrics_ingest.auth import presented_token
from metrics_ingest.http.errors import (
    ApiError,
    ErrorFields,
    Forbidden,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    error_response,
    render_failure,
)
from metrics_ingest.keys import AUTH, CORS_HEADERS, PRINCIPAL, TELEMETRY
from metrics_ingest.store import StorageError

log = logging.getLogger("metrics_ingest.http")

PREFLIGHT_HEADERS = {
    "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, Content-Encoding",
    "Access-Control-Max-Age": "86400",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Access = Literal["push", "read", "admin", "open"]
Credentials = Callable[[web.Request], str | None]


def bearer_token(request: web.Request) -> str | None:
    """The token of `Authorization: Bearer <token>`."""
    return presented_token(request.headers.get("Authorization"))


@dataclass(frozen=True)
class Endpoint:
    """One row of the routing table: `name` is the `route` label of the request counter."""

    name: str
    path: str
    access: Access
    handlers: dict[str, Handler]
    credentials: Credentials = bearer_token
    error_fields: ErrorFields | None = None  # what this API's clients read from an error


def wrap(spec: Endpoint) -> Handler:
    """Wrap one path's handlers with what every request goes through, in one plain call:

    CORS preflight -> method dispatch (405 with Allow) -> auth, before any body is read
    -> the handler -> SPEC's error body for any failure -> Access-Control-Allow-Origin -> the
    request counter. A wrapper rather than aiohttp middlewares: with any middleware at all,
    aiohttp adds two layers per request, ~10% of a small push (bench/README.md).
    """
    handlers = spec.handlers
    access = spec.access
    credentials = spec.credentials
    route = spec.name
    fields = spec.error_fields

    async def handle(request: web.Request) -> web.StreamResponse:
        app = request.app
        try:
            handler = handlers.get(request.method)
            if handler is None:
                if not handlers:
                    raise web.HTTPNotFound()
                if request.method == "OPTIONS":
                    response: web.StreamResponse = web.Response(
                        status=204, headers=PREFLIGHT_HEADERS)
                else:
                    raise web.HTTPMethodNotAllowed(request.method, handlers)
            else:
                if access != "open":
                    check_auth(app, request, access, credentials)
                response = await handler(request)
        except (ApiError, web.HTTPException) as exc:
            response = render_failure(request, exc, fields)
        except StorageError as exc:  # a read the database could not answer (it is down)
            response = render_failure(request, unreadable(request, exc), fields)
        except Exception:
            log.exception("unhandled error in %s %s", request.method, request.path)
            response = error_response(500, "internal error", fields=fields)
        response.headers.update(app[CORS_HEADERS])
        app[TELEMETRY].count_request(route, response.status)
        return response

    handle.__doc__ = f"{spec.path}: {', '.join(sorted(handlers)) or 'no such endpoint'}"
    return handle


def unreadable(request: web.Request, exc: StorageError) -> ServiceUnavailable:
    """The 503 for a read the database could not answer. The database's own words (its host,
    port, what failed) go to a caller with a token only: a public read's anonymous caller is
    told to retry, not where the database lives."""
    if PRINCIPAL in request:
        return ServiceUnavailable(f"the database cannot be read: {exc}", 5)
    return ServiceUnavailable("the database cannot be read; retry shortly", 5)


def check_auth(app: web.Application, request: web.Request, access: Access,
               credentials: Credentials) -> None:
    """Pushes need a token with the push role, admin endpoints one with the admin role;
    reads need one with the read role unless reads are public. Over its rate, a token gets
    429 with Retry-After. The request keeps the token's `Principal` (PRINCIPAL) for the
    source check and the logs."""
    policy = app[AUTH]
    token = credentials(request)
    principal = policy.identify(token)
    if principal is None:
        if access == "read" and policy.reads_public:
            return
        if access != "read":
            app[TELEMETRY].count_rejected("auth")
        raise Unauthorized("missing bearer token" if token is None else "invalid bearer token")
    limiter = principal.limiter
    if limiter is not None:
        wait = limiter.wait(time.monotonic())
        if wait > 0:
            app[TELEMETRY].count_rejected("rate_limited")
            raise TooManyRequests(f"token {principal.name!r} is over its rate of "
                                  f"{limiter.rate:g} requests per second", math.ceil(wait))
    if access not in principal.roles and not (access == "read" and policy.reads_public):
        if access != "read":
            app[TELEMETRY].count_rejected("forbidden")
        raise Forbidden(f"token {principal.name!r} lacks the {access} role")
    request[PRINCIPAL] = principal
    app[TELEMETRY].token_requests[principal.name] += 1
