"""The OpenAPI description of the status pages and their form posts (openapi.py assembles
the document): HTML for people, so most answers are text/html."""

from __future__ import annotations

from typing import Any

from metrics_ingest.openapi_admin import error

HTML = {"text/html": {"schema": {"type": "string"}}}
CREDENTIALS = ("The read token (or any token with the read role) as a bearer header, or kept "
               "for the browser session by POST /login in the metrics_ingest_token cookie "
               "(HttpOnly, SameSite=Strict); none needed while reads are public.")


def page(description: str) -> dict[str, Any]:
    return {"description": description, "content": HTML}


def form(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
        "type": "object", "properties": properties, "required": required}}}}


def redirected(where: str) -> dict[str, Any]:
    return {"303": {"description": f"done; the browser is sent to {where}",
                    "headers": {"Location": {"schema": {"type": "string"}}},
                    "content": HTML},
            "200": page(f"{where}, when the client follows the redirect")}


def status_paths() -> dict[str, Any]:
    read_security: list[dict[str, list[str]]] = [{}, {"bearer": []}]
    refusals = {"401": page("a token is needed: the sign-in form"),
                "403": page("the token lacks the read role"),
                "429": page("the token is over its rate; see Retry-After")}
    return {
        "/": {"get": {
            "summary": "Status page: every source's last push (stale ones marked), its last "
                       "hour, the Pushgateway-API groups, the service's state",
            "description": CREDENTIALS, "security": read_security,
            "responses": {"200": page("the page"), **refusals}}},
        "/sources/{name}": {"get": {
            "summary": "A source's families with their newest values and a sparkline of the "
                       "last hour",
            "description": CREDENTIALS, "security": read_security,
            "parameters": [{"name": "name", "in": "path", "required": True,
                            "schema": {"type": "string"}}],
            "responses": {
                "200": page("the page"), **refusals,
                "404": {"description": "no such source",
                        "content": {**HTML, **error("")["content"]}},
                "503": page("the database cannot be read")}}},
        "/login": {"post": {
            "summary": "Keep a token for the browser session (an HttpOnly, SameSite=Strict "
                       "cookie); a form post from the status page",
            "security": [],
            "requestBody": form({"token": {"type": "string"},
                                 "next": {"type": "string",
                                          "description": "a path on this server"}},
                                ["token"]),
            "responses": {**redirected("`next`, or /"),
                          "400": page("no token given: the sign-in form"),
                          "415": page("not a urlencoded form"),
                          "401": page("the token is not accepted: the sign-in form"),
                          "403": page("the token lacks the read role, or the form was "
                                      "posted from another site's page")}}},
        "/logout": {"post": {
            "summary": "Forget the session's token (the cookie)", "security": [],
            "responses": {**redirected("/"),
                          "403": page("posted from another site's page")}}},
        "/groups/delete": {"post": {
            "summary": "Delete a Pushgateway-API group, as DELETE /metrics/job/<job>{/<label>/"
                       "<value>} does; the status page's delete button",
            "description": "Needs the admin role (bearer header, or the session's cookie "
                           "together with a same-origin Origin or Referer).",
            "security": [{"bearer": []}],
            "requestBody": form({"job": {"type": "string"},
                                 "labels": {"type": "string",
                                            "description": "the grouping labels as a JSON "
                                                           "object, {} for none"}},
                                ["job"]),
            "responses": {**redirected("/#groups"),
                          "400": error("not a group (the job or a label is invalid)"),
                          "415": error("not a urlencoded form"),
                          "401": error("missing or wrong token"),
                          "403": error("the token lacks the admin role or may not write the "
                                       "job, or the form came from another site's page"),
                          "429": error("the token is over its rate; see Retry-After"),
                          "503": error("overloaded, shutting down or storage failure")}}},
    }
