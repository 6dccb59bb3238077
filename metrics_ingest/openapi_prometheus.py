"""The OpenAPI description of the Prometheus query API (`/api/v1/query` and the rest), part
of /api/openapi.json; its answers follow Prometheus's shapes."""

from __future__ import annotations

from typing import Any

# Reads are public unless METRICS_READ_TOKEN is set.
READ_SECURITY: list[dict[str, list[str]]] = [{}, {"bearer": []}]
PROM_ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["status", "errorType", "error"],
    "properties": {"status": {"const": "error"}, "errorType": {"type": "string"},
                   "error": {"type": "string"}},
}


def answer(data: dict[str, Any]) -> dict[str, Any]:
    return {"description": "success", "content": {"application/json": {"schema": {
        "type": "object", "required": ["status", "data"],
        "properties": {"status": {"const": "success"}, "data": data,
                       "warnings": {"type": "array", "items": {"type": "string"}}}}}}}


def failure(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": PROM_ERROR}}}


def parameter(name: str, description: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description,
            "schema": {"type": "string"}}


TIME = "Unix seconds or RFC 3339"
MATCH = {"name": "match[]", "in": "query", "required": False,
         "description": "series selectors", "schema": {"type": "array",
                                                       "items": {"type": "string"}}}
QUERY_ERRORS = {"400": failure("bad_data: a bad parameter or expression, or one not "
                               "supported"),
                "401": failure("read token required"),
                "422": failure("execution: the expression failed (e.g. too many samples)"),
                "503": failure("timeout, or the database cannot be read")}
LIST_ERRORS = {"400": failure("bad_data: a bad parameter"),
               "401": failure("read token required"),
               "503": failure("the database cannot be read")}
STRINGS = {"type": "array", "items": {"type": "string"}}
RESULT = {"type": "object", "required": ["resultType", "result"],
          "properties": {"resultType": {"enum": ["vector", "matrix", "scalar", "string"]},
                         "result": {}}}


def operation(summary: str, parameters: list[dict[str, Any]], data: dict[str, Any],
              errors: dict[str, Any], form: bool) -> dict[str, Any]:
    described = {"summary": summary, "security": READ_SECURITY, "parameters": parameters,
                 "responses": {"200": answer(data), **errors}}
    if not form:
        return {"get": described}
    posted = {**described, "requestBody": {"required": False, "content": {
        "application/x-www-form-urlencoded": {"schema": {
            "type": "object", "additionalProperties": {"type": "string"}}}}}}
    return {"get": described, "post": posted}


def prometheus_paths() -> dict[str, Any]:
    window = [parameter("start", TIME), parameter("end", TIME), MATCH,
              parameter("limit", "at most this many")]
    return {
        "/api/v1/query": operation(
            "PromQL instant query, answered as Prometheus 2.42 answers it",
            [parameter("query", "PromQL expression", True), parameter("time", TIME),
             parameter("timeout", "duration")], RESULT, QUERY_ERRORS, True),
        "/api/v1/query_range": operation(
            "PromQL range query",
            [parameter("query", "PromQL expression", True), parameter("start", TIME, True),
             parameter("end", TIME, True), parameter("step", "duration or seconds", True),
             parameter("timeout", "duration")], RESULT, QUERY_ERRORS, True),
        "/api/v1/series": operation(
            "Label sets of the series match[] selects", window,
            {"type": "array", "items": {"type": "object"}}, LIST_ERRORS, True),
        "/api/v1/labels": operation("Label names", window, STRINGS, LIST_ERRORS, True),
        "/api/v1/label/{name}/values": {"get": {
            "summary": "Values of one label", "security": READ_SECURITY,
            "parameters": [{"name": "name", "in": "path", "required": True,
                            "schema": {"type": "string"}}, *window],
            "responses": {"200": answer(STRINGS), **LIST_ERRORS}}},
        "/api/v1/metadata": operation(
            "Each metric's type and HELP",
            [parameter("metric", "one metric"), parameter("limit", "at most this many")],
            {"type": "object"}, LIST_ERRORS, False),
        "/api/v1/status/buildinfo": operation(
            "The Prometheus version whose API this is", [], {"type": "object"},
            {"401": failure("read token required")}, False),
        "/api/v1/query_exemplars": operation(
            "Exemplars (none are stored)",
            [parameter("query", "PromQL expression"), parameter("start", TIME),
             parameter("end", TIME)], {"type": "array"}, LIST_ERRORS, True),
    }
