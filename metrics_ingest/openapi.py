"""The OpenAPI 3 description of the HTTP API, served at /api/openapi.json.

Built in code from the same limits the validator uses, and kept true by tests (every route is
described, and schemathesis exercises the live app against it).
"""

from __future__ import annotations

from typing import Any

from metrics_ingest import __version__, openapi_admin, openapi_status
from metrics_ingest.model import MAX_LABEL_VALUE, MAX_LABELS, MAX_METRIC_NAME
from metrics_ingest.openapi_prometheus import prometheus_paths

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["status", "error"],
    "properties": {
        "status": {"const": "error"},
        "error": {"type": "string", "description": "what was wrong, naming the field"},
        "errors": {
            "type": "array",
            "maxItems": 100,
            "items": {
                "type": "object",
                "required": ["path", "error"],
                "properties": {"path": {"type": "string"}, "error": {"type": "string"}},
            },
        },
    },
}

PUSH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["source", "metrics"],
    "properties": {
        "source": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"},
        "timestamp": {
            "description": "Unix seconds within [now - 365 days, now + 1 hour]; default: receipt",
            "oneOf": [{"type": "integer"}, {"type": "number"},
                      {"type": "string", "pattern": "^[0-9]{1,12}$"}],
        },
        "metrics": {
            "type": "object",
            "minProperties": 1,
            "description": f"name -> finite number; names match [a-zA-Z_:][a-zA-Z0-9_:]* (at most "
                           f"{MAX_METRIC_NAME} characters). Any other metric is skipped and "
                           "listed in the answer (a 400 with ?strict=true).",
            "additionalProperties": {},
        },
        "labels": {
            "type": "object",
            "maxProperties": MAX_LABELS,
            "propertyNames": {"pattern": "^[a-zA-Z_][a-zA-Z0-9_]*$"},
            "additionalProperties": {"type": "string", "minLength": 1,
                                     "maxLength": MAX_LABEL_VALUE},
        },
    },
}

SKIPPED_SCHEMA: dict[str, Any] = {
    "type": "array", "maxItems": 100,
    "description": "metrics not stored (a bad name or a value that is not a finite number)",
    "items": {"type": "object", "required": ["path", "error"],
              "properties": {"path": {"type": "string"}, "error": {"type": "string"}}},
}

WINDOW_PARAMETER: dict[str, Any] = {
    "name": "window", "in": "query", "required": False,
    "description": "<positive integer><s|m|h|d|w>, default 1h, at most the retention period",
    "schema": {"type": "string", "pattern": "^[1-9][0-9]{0,9}[smhdw]$"},
}


def error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def line_protocol_write(summary: str, database: str, precisions: list[str]) -> dict[str, Any]:
    return {
        "summary": summary,
        "security": [{"bearer": []}],
        "parameters": [
            {"name": database, "in": "query", "required": False,
             "description": "the default source", "schema": {"type": "string"}},
            {"name": "source", "in": "query", "required": False, "schema": {"type": "string"}},
            {"name": "precision", "in": "query", "required": False,
             "schema": {"type": "string", "enum": precisions}},
        ],
        "requestBody": {"required": True, "content": {"text/plain": {
            "schema": {"type": "string"}}}},
        "responses": {
            "204": {"description": "stored"},
            "400": error("a malformed line (named by number), a timestamp out of bounds, or no "
                         "source"),
            "401": error("missing or wrong token"),
            "408": error("the body did not arrive in time"),
            "413": error("body or push too large"),
            "415": error("not line protocol"),
            "503": error("overloaded, shutting down or storage failure; see Retry-After"),
        },
    }


def influx_compatibility() -> dict[str, Any]:
    """What InfluxDB clients call besides writes: /ping, /health, and /query's two statements."""
    json_object = {"application/json": {"schema": {"type": "object"}}}
    query = {
        "summary": "InfluxDB 1 /query: SHOW DATABASES (the sources) and CREATE DATABASE (a "
                   "no-op) only",
        "security": [{"bearer": []}],
        "parameters": [{"name": "q", "in": "query", "required": False,
                        "schema": {"type": "string"}}],
        "responses": {"200": {"description": "InfluxDB 1 results", "content": json_object},
                      "400": error("another statement, or no q"),
                      "401": error("missing or wrong token")}}
    return {
        "/ping": {method: {"summary": "InfluxDB ping: 204 with X-Influxdb-Version",
                           "security": [], "responses": {"204": {"description": "up"}}}
                  for method in ("get", "head")},
        "/health": {"get": {"summary": "InfluxDB 2 health document", "security": [],
                            "responses": {"200": {"description": "pass", "content": json_object},
                                          "503": {"description": "fail",
                                                  "content": json_object}}}},
        "/query": {"get": query, "post": query},
    }


def pushgateway_operation(method: str) -> dict[str, Any]:
    meaning = {"put": "replace the whole group", "post": "replace the pushed families",
               "delete": "remove the group from /metrics"}[method]
    operation: dict[str, Any] = {
        "summary": f"Pushgateway API: {meaning}",
        "security": [{"bearer": []}],
        "parameters": [{
            "name": "grouping", "in": "path", "required": True,
            "description": "job/<job>{/<label>/<value>}; `<name>@base64/<value>` for values "
                           "holding `/`", "schema": {"type": "string"}}],
        "responses": {
            "401": error("missing or wrong token"),
            "400": error("a bad grouping path or body, or a sample with a timestamp"),
            "503": error("overloaded, shutting down or storage failure; see Retry-After"),
        },
    }
    if method == "delete":
        operation["responses"]["202"] = {"description": "the group is no longer exported",
                                         "content": {"application/json": {"schema": {
                                             "type": "object"}}}}
    else:
        operation["parameters"].append({
            "name": "timestamp", "in": "query", "required": False,
            "description": "Unix seconds the samples carry (a late, spooled push); "
                           "default: now", "schema": {"type": "string", "pattern": "^[0-9]+$"}})
        operation["requestBody"] = {"required": False, "content": {"text/plain": {
            "schema": {"type": "string"}}}}
        operation["responses"].update({
            "200": {"description": "committed", "content": {"application/json": {
                "schema": {"type": "object"}}}},
            "408": error("the body did not arrive in time"),
            "413": error("body or push too large"),
            "415": error("not the text format"),
        })
    return operation


def document() -> dict[str, Any]:
    # Reads are public unless METRICS_READ_TOKEN is set.
    read_security: list[dict[str, list[str]]] = [{}, {"bearer": []}]
    return {
        "openapi": "3.0.3",
        "info": {"title": "metrics-ingest", "version": __version__,
                 "description": "Push metrics over HTTP; read them as Prometheus text or JSON."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": ERROR_SCHEMA, "Push": PUSH_SCHEMA},
        },
        "paths": {
            "/ingest": {"post": {
                "summary": "Push samples; answered after they are committed",
                "security": [{"bearer": []}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "oneOf": [{"$ref": "#/components/schemas/Push"},
                              {"type": "array", "minItems": 1,
                               "items": {"$ref": "#/components/schemas/Push"}}]}}}},
                "parameters": [{"name": "strict", "in": "query", "required": False,
                                "description": "true: a skipped metric is a 400 instead",
                                "schema": {"type": "boolean"}}],
                "responses": {
                    "200": {"description": "committed", "content": {"application/json": {
                        "schema": {"type": "object", "required": ["status", "inserted"],
                                   "properties": {"status": {"const": "ok"},
                                                  "inserted": {"type": "integer"},
                                                  "skipped": SKIPPED_SCHEMA}}}}},
                    "400": error("not JSON, or a push-level problem (source, timestamp, labels, "
                                 "nothing left to store); nothing stored"),
                    "401": error("missing or wrong bearer token"),
                    "408": error("the body did not arrive in time"),
                    "413": error("body or push too large"),
                    "415": error("unsupported Content-Encoding"),
                    "503": error("overloaded, shutting down or storage failure; see Retry-After"),
                    **openapi_admin.TENANT_ERRORS,
                },
            }},
            "/write": {"post": line_protocol_write(
                "InfluxDB v1 write: line protocol", "db",
                ["n", "ns", "u", "ms", "s", "m", "h"])},
            "/api/v2/write": {"post": line_protocol_write(
                "InfluxDB v2 write: line protocol", "bucket", ["ns", "us", "ms", "s"])},
            **influx_compatibility(),
            "/api/v1/write": {"post": {
                "summary": "Prometheus remote_write 1.0 (snappy-compressed protobuf)",
                "security": [{"bearer": []}],
                "parameters": [{"name": "source", "in": "query", "required": False,
                                "schema": {"type": "string"}}],
                "requestBody": {"required": True, "content": {"application/x-protobuf": {
                    "schema": {"type": "string", "format": "binary"}}}},
                "responses": {
                    "204": {"description": "stored"},
                    "400": error("not a WriteRequest (the sender drops it)"),
                    "401": error("missing or wrong bearer token"),
                    "408": error("the body did not arrive in time"),
                    "413": error("body too large"),
                    "415": error("not snappy, or not remote_write 1.0"),
                    "503": error("overloaded or storage failure: the sender retries"),
                },
            }},
            "/metrics/{grouping}": {method: pushgateway_operation(method) for method in (
                "put", "post", "delete")},
            "/metrics": {"get": {
                "summary": "Prometheus text exposition 0.0.4 of fresh series and self-metrics",
                "security": read_security,
                "responses": {
                    "200": {"description": "exposition", "content": {
                        "text/plain": {"schema": {"type": "string"}}}},
                    "401": error("read token required"),
                },
            }},
            "/api/metrics": {"get": {
                "summary": "Samples in a window, newest first",
                "security": read_security,
                "parameters": [
                    {"name": "source", "in": "query", "required": False,
                     "schema": {"type": "string", "minLength": 1, "maxLength": 256}},
                    {"name": "metric", "in": "query", "required": False,
                     "schema": {"type": "string", "minLength": 1, "maxLength": 256}},
                    WINDOW_PARAMETER,
                    {"name": "limit", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 1, "maximum": 50000}},
                ],
                "responses": {
                    "200": {"description": "samples", "content": {"application/json": {
                        "schema": {"type": "array", "items": {
                            "type": "object",
                            "required": ["source", "timestamp", "metric_name", "metric_value"],
                            "properties": {
                                "source": {"type": "string"},
                                "timestamp": {"type": "integer"},
                                "metric_name": {"type": "string"},
                                "metric_value": {"type": "number"},
                                "labels": {"type": "object",
                                           "additionalProperties": {"type": "string"}},
                            }}}}}},
                    "400": error("a bad parameter, named in the error"),
                    "401": error("read token required"),
                },
            }},
            "/api/sources": {"get": {
                "summary": "Sources with a sample in the window, sorted",
                "security": read_security,
                "parameters": [WINDOW_PARAMETER],
                "responses": {
                    "200": {"description": "sources", "content": {"application/json": {
                        "schema": {"type": "array", "items": {"type": "string"}}}}},
                    "400": error("a bad window"),
                    "401": error("read token required"),
                },
            }},
            **prometheus_paths(),
            "/api/v1/admin/tsdb/delete_series": openapi_admin.delete_series(),
            "/healthz": {"get": {
                "summary": "Liveness", "security": [],
                "responses": {"200": {"description": "serving", "content": {
                    "application/json": {"schema": {"type": "object"}}}}},
            }},
            "/readyz": {"get": {
                "summary": "Readiness: pushes can be committed now", "security": [],
                "responses": {
                    "200": {"description": "ready", "content": {
                        "application/json": {"schema": {"type": "object"}}}},
                    "503": error("shutting down, overloaded, or the database refuses writes"),
                },
            }},
            "/api/openapi.json": {"get": {
                "summary": "This document", "security": [],
                "responses": {"200": {"description": "OpenAPI 3 document", "content": {
                    "application/json": {"schema": {"type": "object"}}}}},
            }},
            **openapi_status.status_paths(),
        },
    }
