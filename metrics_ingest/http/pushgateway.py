"""`PUT | POST | DELETE /metrics/job/<job>{/<label>/<value>}`: the Pushgateway's push API, so
`prometheus_client.push_to_gateway` and friends work with only the URL and a token changed."""

from __future__ import annotations

from aiohttp import web

from metrics_ingest.formats import pushgateway
from metrics_ingest.formats.fields import check_timestamp
from metrics_ingest.formats.pushgateway import GroupParams, parse_group_push
from metrics_ingest.http.errors import BadRequest, UnsupportedMediaType, json_response
from metrics_ingest.http.intake import Attempt, accept, invalid_push
from metrics_ingest.http.params import parse_duration
from metrics_ingest.keys import SETTINGS
from metrics_ingest.model import (
    DIGITS_RE,
    FieldError,
    GroupOp,
    PushInvalid,
)

OPS: dict[str, GroupOp] = {"PUT": "put", "POST": "post", "DELETE": "delete"}
TEXT_TYPES = ("text/plain", "application/octet-stream", "application/x-www-form-urlencoded")


def push_time(request: web.Request, now: float) -> float:
    """The time samples carry: the push's receipt, or `?timestamp=` (Unix seconds) when a
    spooled push is sent late (`metrics-ingest push`), within the bounds of any timestamp."""
    raw = request.query.get("timestamp")
    if raw is None:
        return now
    errors: list[FieldError] = []
    seconds = (check_timestamp(raw, now, "timestamp", errors) if DIGITS_RE.fullmatch(raw)
               else None)
    if seconds is None:
        problem = errors[0].error if errors else "must be Unix seconds (digits)"
        raise BadRequest(f"?timestamp= {problem}")
    return float(seconds)


class GroupPushFormat:
    """The Pushgateway API: the grouping path first (it names the source, the job, even of a
    refused push), then a text body for PUT and POST."""

    raw = False
    parse = staticmethod(parse_group_push)

    @staticmethod
    def check(request: web.Request, attempt: Attempt) -> GroupParams:
        op = OPS[request.method]
        try:
            grouping = pushgateway.parse_grouping(request.match_info["grouping"])
        except PushInvalid as exc:
            raise invalid_push(exc) from None
        attempt.source = grouping.source
        if (op != "delete" and "Content-Type" in request.headers
                and request.content_type not in TEXT_TYPES):
            raise UnsupportedMediaType(
                f"Content-Type {request.content_type[:64]!r} is not supported; push the "
                "Prometheus text format (the protobuf format is not accepted)")
        when = attempt.now if op == "delete" else push_time(request, attempt.now)
        raw_ttl = request.query.get("ttl")
        ttl = None if raw_ttl is None else parse_duration("ttl", raw_ttl)
        return GroupParams(op, grouping, when, request.app[SETTINGS].queue_max_samples, ttl)


GROUP_PUSH = GroupPushFormat()


async def push(request: web.Request) -> web.Response:
    parsed, inserted = await accept(request, GROUP_PUSH)
    if parsed.group is not None and parsed.group.op == "delete":
        return json_response({"status": "ok", "deleted": True}, status=202)
    return json_response({"status": "ok", "inserted": inserted})
