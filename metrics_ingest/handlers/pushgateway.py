"""`PUT | POST | DELETE /metrics/job/<job>{/<label>/<value>}`: the Pushgateway's push API, so
`prometheus_client.push_to_gateway` and friends work with only the URL and a token changed."""

from __future__ import annotations

from aiohttp import web

from metrics_ingest import pushgateway
from metrics_ingest.errors import ApiError, BadRequest, UnsupportedMediaType, json_response
from metrics_ingest.handlers.intake import body_of, commit, count_rejection, now_of, parsed
from metrics_ingest.keys import TELEMETRY
from metrics_ingest.pushgateway import GroupOp, GroupPush
from metrics_ingest.validation import DIGITS_RE, SampleGroup

OPS: dict[str, GroupOp] = {"PUT": "put", "POST": "post", "DELETE": "delete"}
TEXT_TYPES = ("text/plain", "application/octet-stream", "application/x-www-form-urlencoded")


def push_time(request: web.Request, now: float) -> float:
    """The time samples carry: the push's receipt, or `?timestamp=` (Unix seconds) when a
    spooled push is sent late (`metrics-ingest push`); bounds are checked like any timestamp."""
    raw = request.query.get("timestamp")
    if raw is None:
        return now
    if not DIGITS_RE.fullmatch(raw):
        raise BadRequest("timestamp must be Unix seconds (digits)")
    return float(raw)


async def push(request: web.Request) -> web.Response:
    now = now_of(request)
    op = OPS[request.method]
    source: str | None = None
    try:
        grouping = parsed(lambda: pushgateway.parse_grouping(request.match_info["grouping"]))
        source = grouping.source
        groups: list[SampleGroup] = []
        group = GroupPush(op, grouping)
        if op != "delete":
            if ("Content-Type" in request.headers
                    and request.content_type not in TEXT_TYPES):
                raise UnsupportedMediaType(
                    f"Content-Type {request.content_type[:64]!r} is not supported; push the "
                    "Prometheus text format (the protobuf format is not accepted)")
            try:
                text = (await body_of(request)).decode("utf-8")
            except UnicodeDecodeError:
                raise BadRequest("the body is not UTF-8 text") from None
            when = push_time(request, now)
            groups, group, skipped = parsed(
                lambda: pushgateway.parse_text(text, grouping, when, op))
            if skipped:
                request.app[TELEMETRY].dropped_samples[("pushgateway", "non_finite")] += skipped
        inserted = await commit(request, groups, now, group)
    except ApiError as exc:
        count_rejection(request, exc, source)
        raise
    if op == "delete":
        return json_response({"status": "ok", "deleted": True}, status=202)
    return json_response({"status": "ok", "inserted": inserted})
