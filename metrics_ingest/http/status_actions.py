"""The status page's form posts: `POST /login` keeps a token for the browser session in an
HttpOnly, SameSite=Strict cookie (never in a URL), `POST /logout` forgets it, and
`POST /groups/delete` deletes a Pushgateway-API group as the Pushgateway's DELETE does,
through the writer, for a token with the admin role.

Cross-site request forgery: a cookie set SameSite=Strict is not sent with a request another
site starts, and a post carrying the cookie must also come from this server's own page (its
Origin, else Referer, names the host the request was sent to; Sec-Fetch-Site, when the
browser sends it, says same-origin). A post with an `Authorization` header (curl) carries no
ambient credential, so it needs neither."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from urllib.parse import urlsplit

import orjson
from aiohttp import web

from metrics_ingest.formats.pushgateway import parse_grouping
from metrics_ingest.http.endpoint import bearer_token
from metrics_ingest.http.errors import ApiError, BadRequest, Forbidden, UnsupportedMediaType
from metrics_ingest.http.intake import StorageUnavailable, queue
from metrics_ingest.inbox import Closed, StorageFailed
from metrics_ingest.keys import AUTH, CLOCK, PRINCIPAL
from metrics_ingest.model import Grouping, GroupPush, Parsed, PushInvalid
from metrics_ingest.status.layout import (
    CONTENT_SECURITY_POLICY,
    COOKIE,
    message_page,
    sign_in_page,
)

MAX_TOKEN = 4096
MAX_NEXT = 2048
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def page_credentials(request: web.Request) -> str | None:
    """The page endpoints' credential: a bearer token, else the session's cookie."""
    return bearer_token(request) or request.cookies.get(COOKIE) or None


def html(text: str, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8",
                        headers={**PAGE_HEADERS, "Content-Security-Policy":
                                 CONTENT_SECURITY_POLICY, **(headers or {})})


def see_other(location: str) -> web.Response:
    """303: the browser GETs `location` (after a post, reloading does not post again)."""
    return web.Response(status=303, text=f'<a href="{location}">{location}</a>\n',
                        content_type="text/html", headers={**PAGE_HEADERS,
                                                            "Location": location})


def local_path(raw: object) -> str:
    """Where to go after signing in: a path on this server, else `/` (never elsewhere)."""
    if (not isinstance(raw, str) or not raw.startswith("/") or raw.startswith(("//", "/\\"))
            or len(raw) > MAX_NEXT or not raw.isprintable()):
        return "/"
    return raw


def forwarded_hosts(request: web.Request) -> set[str]:
    hosts = {request.host.lower()}
    for header in ("X-Forwarded-Host", "Forwarded"):
        value = request.headers.get(header, "")
        if header == "Forwarded":
            value = ",".join(part.strip()[5:].strip('"') for element in value.split(",")
                             for part in element.split(";")
                             if part.strip().lower().startswith("host="))
        hosts.update(host.strip().lower() for host in value.split(",") if host.strip())
    return hosts


def cross_origin(request: web.Request, required: bool) -> bool:
    """True when the post comes from another site's page: its Origin (else Referer) names
    another host than the request's (Host, or the X-Forwarded-Host / Forwarded host a
    reverse proxy sets, which a cross-site form cannot), or Sec-Fetch-Site says so. With
    `required`, a post that names no origin at all counts as cross-origin too."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return True
    origin = request.headers.get("Origin") or request.headers.get("Referer")
    if not origin or origin == "null":
        return required
    return urlsplit(origin).netloc.lower() not in forwarded_hosts(request)


async def form_of(request: web.Request) -> Mapping[str, object]:
    """The posted form: urlencoded, as a browser's form (and `curl -d`) sends it."""
    if request.content_type != "application/x-www-form-urlencoded":
        raise UnsupportedMediaType("post a form (application/x-www-form-urlencoded), not "
                                   f"{request.content_type[:64]!r}")
    try:
        return await request.post()
    except ValueError:  # (UnicodeDecodeError too)
        raise BadRequest("the form is not UTF-8 text") from None


async def login(request: web.Request) -> web.Response:
    if cross_origin(request, required=False):
        return html(message_page(403, "Signing in from another site's page is refused."), 403)
    try:
        form = await form_of(request)
    except ApiError as exc:
        return html(message_page(exc.status, exc.message), exc.status)
    next_path = local_path(form.get("next"))
    token = form.get("token")
    if not isinstance(token, str) or not token.strip() or len(token) > MAX_TOKEN:
        return html(sign_in_page(next_path, "Give a token."), 400)
    token = token.strip()
    policy = request.app[AUTH]
    principal = policy.identify(token)
    if principal is None:
        return html(sign_in_page(next_path, "That token is not accepted here."), 401)
    if "read" not in principal.roles and not policy.reads_public:
        return html(sign_in_page(next_path, f"The token {principal.name!r} lacks the read "
                                            "role these pages need."), 403)
    response = see_other(next_path)
    # A session cookie (no Max-Age): gone when the browser closes. Its value is the token
    # itself, so any worker or replica serving the next request knows it.
    response.set_cookie(COOKIE, token, path="/", httponly=True, samesite="Strict",
                        secure=request.secure)
    return response


async def logout(request: web.Request) -> web.Response:
    if cross_origin(request, required=False):
        return html(message_page(403, "Signing out from another site's page is refused."), 403)
    response = see_other("/")
    response.del_cookie(COOKIE, path="/")
    return response


def grouping_of(form: Mapping[str, object]) -> Grouping:
    """The group the form names (`job`, and `labels` as a JSON object), checked as a
    Pushgateway grouping path is."""
    job, raw = form.get("job"), form.get("labels") or "{}"
    if not isinstance(job, str) or not isinstance(raw, str):
        raise BadRequest("the form needs job and labels (a JSON object)")
    try:
        labels = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("labels must be a JSON object of label names to values") from None
    if not isinstance(labels, dict) or not all(isinstance(value, str)
                                               for value in labels.values()):
        raise BadRequest("labels must be a JSON object of label names to values")
    parts = ["job@base64", base64.urlsafe_b64encode(job.encode()).decode()]
    for name, value in labels.items():
        parts += [f"{name}@base64", base64.urlsafe_b64encode(value.encode()).decode()]
    try:
        return parse_grouping("/".join(parts))
    except PushInvalid as exc:
        raise BadRequest(f"not a group: {exc}") from None


async def delete_group(request: web.Request) -> web.Response:
    """As `DELETE /metrics/job/<job>{/<label>/<value>}`: the group's series leave
    /metrics at once, their samples stay until retention; a group that does not exist is
    nothing to delete. Answers 303 to the overview once committed."""
    if bearer_token(request) is None and cross_origin(request, required=True):
        raise Forbidden("a group can be deleted from this server's own page only (the "
                        "request's Origin is another site's, or missing)")
    grouping = grouping_of(await form_of(request))
    principal = request.get(PRINCIPAL)
    if principal is not None and principal.forbidden([grouping.source]) is not None:
        raise Forbidden(f"token {principal.name!r} may not write source {grouping.source!r}")
    app = request.app
    push = queue(app, Parsed([], GroupPush("delete", grouping)), app[CLOCK]())
    assert push is not None  # a group operation is always something to store
    try:
        await push.done
    except (StorageFailed, Closed) as exc:
        raise StorageUnavailable(str(exc)) from None
    return see_other("/#groups")
