"""Admin endpoints: `POST /api/v1/admin/tsdb/delete_series`, as Prometheus has it."""

from __future__ import annotations

import logging
import math
from datetime import datetime

from aiohttp import web
from multidict import MultiDict

from metrics_ingest.deleting import EVER, delete_series
from metrics_ingest.http.errors import BadRequest
from metrics_ingest.keys import PRINCIPAL, WRITER
from metrics_ingest.model import shorten
from metrics_ingest.selectors import SelectorError, parse_selector

log = logging.getLogger("metrics_ingest.admin")

def parse_time(name: str, raw: str) -> int:
    """Unix seconds (fractions allowed) or RFC 3339, as Prometheus's API takes them;
    whole seconds, rounded down for a start and up for an end."""
    text = raw.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise BadRequest(f"invalid parameter {name!r}: cannot parse "
                             f"{shorten(raw, 40)!r} to a valid timestamp") from None
    if not math.isfinite(seconds):
        raise BadRequest(f"invalid parameter {name!r}: {shorten(raw, 40)!r} is not a time")
    return math.floor(seconds) if name == "start" else math.ceil(seconds)


async def delete_series_handler(request: web.Request) -> web.Response:
    """204 once the matching samples are deleted (read from the query string or a form
    body); /metrics and every read reflect it at once."""
    params: MultiDict[str] = MultiDict(request.query)
    if request.content_type == "application/x-www-form-urlencoded":
        params.extend([(key, str(value)) for key, value in (await request.post()).items()])
    unknown = sorted(set(params) - {"match[]", "start", "end"})
    if unknown:
        raise BadRequest(f"unknown parameter(s): {', '.join(shorten(n, 32) for n in unknown)}")
    texts = params.getall("match[]", [])
    if not texts:
        raise BadRequest("no match[] parameter provided")
    try:
        selectors = [parse_selector(str(text)) for text in texts]
    except SelectorError as exc:
        raise BadRequest(str(exc)) from None
    start = parse_time("start", str(params["start"])) if "start" in params else EVER[0]
    end = parse_time("end", str(params["end"])) if "end" in params else EVER[1]
    if end < start:
        raise BadRequest("invalid parameter 'end': end timestamp must not be before start")
    deleted = await delete_series(request.app[WRITER], selectors, start, end)
    principal = request.get(PRINCIPAL)
    log.info("delete_series by token %r: %s removed %d samples of %d series (%d series "
             "forgotten) in %.2f s", principal.name if principal else "?",
             " ".join(map(str, texts)), deleted.samples, deleted.series_matched,
             deleted.series_forgotten, deleted.seconds)
    return web.Response(status=204)
