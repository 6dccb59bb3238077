"""The OpenAPI description of the admin endpoints (openapi.py assembles the document)."""

from __future__ import annotations

from typing import Any


def error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def time_parameter(name: str, what: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": what,
            "schema": {"type": "string"}}


def delete_series() -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": "Delete the samples of the series the selectors match (Prometheus's API)",
        "security": [{"bearer": []}],
        "parameters": [
            {"name": "match[]", "in": "query", "required": True,
             "description": 'series selectors, e.g. up{source="alpha"}',
             "schema": {"type": "array", "items": {"type": "string"}}},
            time_parameter("start", "Unix seconds or RFC 3339; default: the beginning"),
            time_parameter("end", "Unix seconds or RFC 3339; default: the end"),
        ],
        "responses": {
            "204": {"description": "deleted"},
            "400": error("a bad selector or time, in Prometheus's error shape"),
            "401": error("missing or wrong bearer token"),
            "403": error("the token lacks the admin role"),
            "429": error("the token is over its rate"),
            "503": error("the database refused the deletion"),
        },
    }
    return {"post": operation, "put": operation}


TENANT_ERRORS = {
    "403": error("the token may not write a source of the push (named)"),
    "422": error("the push would create series beyond a series budget; not to be retried"),
    "429": error("the token is over its rate; see Retry-After"),
}
