"""Prometheus's error body for the /api/v1 query endpoints: `{"status": "error",
"errorType": ..., "error": ...}` with the status code Prometheus answers for each type, since
its clients (Grafana, promtool, vmalert) read `errorType`."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from metrics_ingest.http.errors import json_response

# errorType -> status, as Prometheus's API answers them (web/api/v1/api.go, respondError).
STATUS = {"bad_data": 400, "execution": 422, "canceled": 503, "timeout": 503,
          "unavailable": 503, "internal": 500, "not_found": 404}
# status -> errorType, for what the endpoint wrapper answers (auth, methods, the database).
ERROR_TYPES = {400: "bad_data", 401: "unauthorized", 403: "unauthorized", 404: "not_found",
               422: "execution", 500: "internal", 503: "unavailable"}


def prometheus_error_fields(status: int, message: str) -> dict[str, Any]:
    """The `errorType` of an answer the endpoint wrapper renders (Endpoint.error_fields)."""
    return {"errorType": ERROR_TYPES.get(status, "bad_data" if status < 500 else "internal")}


def prometheus_error(error_type: str, message: str) -> web.Response:
    """A query's own failure, with the status Prometheus gives its type."""
    return json_response({"status": "error", "errorType": error_type, "error": message},
                         status=STATUS.get(error_type, 500))
