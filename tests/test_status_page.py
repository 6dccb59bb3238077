"""The status page rendered on the server: every source with its last push and the stale ones
marked, each source's last hour (from the counters) and formats, a source's families with
their newest values and sparklines, the groups with a delete button that deletes as the
Pushgateway's DELETE does, and the read token asked for once and kept in a cookie. On both
engines; the real browser is tests/test_status_browser.py."""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from metrics_ingest.config import Settings
from metrics_ingest.http.status_page import STATUS
from metrics_ingest.keys import TELEMETRY
from metrics_ingest.model import FamilyMeta
from metrics_ingest.status.activity import MIN_STALE_SECONDS, Activity, Rolling
from metrics_ingest.status.figures import plan_families
from metrics_ingest.status.layout import CONTENT_SECURITY_POLICY, COOKIE, duration
from metrics_ingest.status.sparkline import columns, sparkline
from metrics_ingest.store import SourceSeries
from metrics_ingest.telemetry import Telemetry
from tests.conftest import AUTH, Clock

Client = TestClient[web.Request, web.Application]
ADMIN = "status-admin-token"
READER = "status-read-token"
ROW_RE = re.compile(r'<tr class="(stale|ok)" data-source="([^"]+)">(.*?)</tr>', re.DOTALL)
GROUP_RE = re.compile(r'<tr data-job="([^"]+)" data-grouping="([^"]*)">(.*?)</tr>', re.DOTALL)


def source_rows(page: str) -> dict[str, tuple[str, str]]:
    """source -> (state class, the row's HTML), in page order."""
    return {name: (state, html) for state, name, html in ROW_RE.findall(page)}


async def page(client: Client, path: str = "/", **kwargs: Any) -> str:
    response = await client.get(path, **kwargs)
    assert response.status == 200, await response.text()
    assert response.content_type == "text/html"
    return await response.text()


async def push(client: Client, body: Any, headers: dict[str, str] | None = None) -> int:
    response = await client.post("/ingest", json=body, headers=headers or AUTH)
    return response.status


# -- the figures, without a server ---------------------------------------------------------


def test_rolling_counts_the_last_hour_to_the_minute() -> None:
    counter: dict[str, int] = {"a": 5}
    rolling: Rolling[str] = Rolling(counter)  # what was counted before the start is not in it
    counter["a"] = 7
    rolling.advance(1000, counter)
    counter["a"], counter["b"] = 10, 1
    rolling.advance(1030, counter)
    counter["a"] = 11  # not read yet: still counted
    assert rolling.totals(1030, counter) == {"a": 6, "b": 1}
    assert rolling.totals(1059, counter) == {"a": 6, "b": 1}
    assert rolling.totals(1060, counter) == {"a": 4, "b": 1}  # minute 1000 left the hour
    assert rolling.totals(1090, counter) == {"a": 1}
    assert rolling.sums == {}


def test_push_intervals_come_from_last_push_and_set_the_stale_threshold() -> None:
    telemetry = Telemetry()
    activity = Activity(telemetry, 1000.0)
    for pushed in (1000.0, 1600.0, 2200.0, 2800.0):  # every 10 min
        telemetry.last_push["cron"] = pushed
        activity.tick(pushed + 1, telemetry)
        activity.tick(pushed + 16, telemetry)  # the same push seen again is no interval
    telemetry.last_push["cron"] = 2700.0  # committed out of order: moved back, not a push
    activity.note_pushes(telemetry)
    assert list(activity.intervals["cron"]) == [600.0, 600.0, 600.0]
    assert activity.stale_after("cron", None) == 1200.0
    assert activity.stale_after("never-seen", None) == MIN_STALE_SECONDS
    telemetry.last_push["fast"] = 10.0
    activity.note_pushes(telemetry)
    telemetry.last_push["fast"] = 25.0
    activity.note_pushes(telemetry)
    assert activity.stale_after("fast", None) == MIN_STALE_SECONDS  # 2 x 15 s, at least 5 min
    assert activity.stale_after("cron", 90) == 90.0  # METRICS_STALE_AFTER wins


def test_sparkline_keeps_a_spike_and_draws_without_colour_alone() -> None:
    times = list(range(0, 3600))
    values = [1.0] * 3600
    values[1800] = 50.0  # one spike among 3,600 samples
    points = columns(times, values, 0, 3600, 160)
    assert len(points) <= 2 * 160
    assert max(value for _, value in points) == 50.0
    svg = sparkline([(times, values), ([0, 3600], [2.0, 3.0])], 0, 3600, 'x<y & "z"')
    assert svg.startswith('<svg class="spark"')
    assert svg.endswith("</svg>")
    assert 'aria-label="x&lt;y &amp; &quot;z&quot;"' in svg
    assert svg.count("<polyline") == 2
    assert 'stroke-dasharray="4 2"' in svg
    assert sparkline([([5], [float("nan")])], 0, 10, "none") == ""
    flat = sparkline([([0, 5, 10], [7.0, 7.0, 7.0])], 0, 10, "flat")
    assert ",18.0 " in flat  # a constant is drawn across the middle


def test_a_histogram_is_one_family_listing_its_count_and_sum() -> None:
    declared = {"lat": FamilyMeta("histogram", "Latency")}
    rows = [SourceSeries(1, "lat_bucket", '{"le":"1"}', 3, 0),
            SourceSeries(2, "lat_bucket", '{"le":"+Inf"}', 4, 0),
            SourceSeries(3, "lat_count", "", 4, 0), SourceSeries(4, "lat_sum", "", 2.5, 0),
            SourceSeries(5, "up", "", 1, 0)]
    lat, up = plan_families(rows, declared)
    assert (lat.name, lat.type, lat.help, lat.series) == ("lat", "histogram", "Latency", 4)
    assert [row.metric_name for row in lat.shown] == ["lat_count", "lat_sum"]
    assert lat.plotted == [3]
    assert (up.name, up.type, up.plotted) == ("up", "gauge", [5])


# -- the overview --------------------------------------------------------------------------


async def test_every_source_shows_with_the_stale_one_marked(
        make_client: Callable[[Settings], Any], settings: Settings, clock: Clock) -> None:
    client = await make_client(settings)
    clock.pinned = time.time() - 3600
    assert await push(client, {"source": "old", "metrics": {"a": 1}}) == 200
    clock.pinned = None
    assert await push(client, {"source": "alpha", "metrics": {"a": 1, "b": 2, "s": "x"}}) == 200
    assert await push(client, {"source": "alpha", "metrics": {"a": "nope"}}) == 400
    influx = await client.post("/write?db=beta&precision=s", data="cpu value=1\n", headers=AUTH)
    assert influx.status == 204
    text = await page(client)
    rows = source_rows(text)
    assert list(rows) == ["old", "alpha", "beta"]  # the stale first
    assert rows["old"][0] == "stale"
    assert "⚠ STALE" in rows["old"][1]
    assert "1 h ago" in rows["old"][1]
    assert rows["alpha"][0] == rows["beta"][0] == "ok"
    assert "✓ ok" in rows["alpha"][1]
    assert "⚠ 1 of 3 sources stale" in text
    assert "<title>metrics-ingest: 3 sources, 1 stale</title>" in text
    alpha = rows["alpha"][1]
    assert '<td data-label="Series" class="num">2</td>' in alpha
    assert '<td data-label="Samples, since start" class="num">2</td>' in alpha
    assert "invalid 1" in alpha  # the refused push
    assert '<td data-label="Skipped samples, since start">not_a_number 1</td>' in alpha
    assert '<td data-label="Formats">JSON</td>' in alpha
    assert '<td data-label="Formats">Influx v1</td>' in rows["beta"][1]
    assert 'href="/sources/alpha"' in alpha
    assert "stale after 5 min" in alpha


async def test_the_threshold_can_be_set(
        make_client: Callable[[Settings], Any], settings: Settings, clock: Clock) -> None:
    client = await make_client(settings.replace(stale_after=60))
    clock.pinned = time.time() - 120
    assert await push(client, {"source": "cron", "metrics": {"a": 1}}) == 200
    clock.pinned = None
    rows = source_rows(await page(client))
    assert rows["cron"][0] == "stale"
    assert "stale after 1 min" in rows["cron"][1]


async def test_by_default_the_threshold_is_twice_the_median_interval(
        client: Client, clock: Clock) -> None:
    activity = client.app[STATUS].activity
    start = time.time() - 3000
    for step in range(5):  # every 10 min, the last one 10 min ago: not stale before 20
        clock.pinned = start + step * 600
        assert await push(client, {"source": "cron", "metrics": {"a": step}}) == 200
        activity.note_pushes(client.app[TELEMETRY])
    clock.pinned = None
    rows = source_rows(await page(client))
    assert rows["cron"][0] == "ok"
    assert "stale after 20 min" in rows["cron"][1]


async def test_the_service_state_is_shown(client: Client, settings: Settings) -> None:
    text = await page(client)
    service = text[text.index('<dl class="state" id="service">'):]
    engine = "PostgreSQL" if settings.db_url else "SQLite"
    for expected in (f"<dd>{engine}</dd>", "samples waiting", "none since this server started",
                     "<dt>Database size</dt>", "metrics-ingest 0", "<dt>Version</dt>"):
        assert expected in service, expected
    assert "No source has pushed yet." in text


# -- a source's page -----------------------------------------------------------------------


async def test_a_source_page_lists_families_with_newest_values_and_sparklines(
        client: Client) -> None:
    now = int(time.time())
    for ago in (3000, 2000, 1000, 10):
        body = {"source": "hpc", "timestamp": now - ago, "labels": {"partition": "gpu"},
                "metrics": {"slurm_pending_jobs": ago // 10}}
        assert await push(client, body) == 200
    text = ("# TYPE lat histogram\n# HELP lat Latency.\nlat_bucket{le=\"1\"} 1\n"
            'lat_bucket{le="+Inf"} 2\nlat_sum 1.5\nlat_count 2\n')
    assert (await client.put("/metrics/job/hpc", data=text, headers=AUTH)).status == 200
    html = await page(client, "/sources/hpc")
    assert "<h2><span class=\"badge ok\">✓ ok</span> Source <code>hpc</code></h2>" in html
    families = dict(re.findall(r'<tr data-family="([^"]+)">(.*?)</tr>', html, re.DOTALL))
    assert list(families) == ["lat", "slurm_pending_jobs"]
    pending = families["slurm_pending_jobs"]
    assert "<code>{partition=&quot;gpu&quot;}</code> <b>1</b>" in pending  # the newest
    assert "<polyline" in pending
    assert "min 1 · max 300" in pending
    lat = families["lat"]
    assert '<span class="badge">histogram</span>' in lat
    assert "Latency." in lat
    assert "_count{instance=&quot;&quot;,job=&quot;hpc&quot;}</code> <b>2</b>" in lat
    assert "… 2 more series" in lat  # the buckets
    missing = await client.get("/sources/nobody")
    assert missing.status == 404
    assert "No source named" in await missing.text()
    assert (await client.get("/sources/bad%20name")).status == 404


# -- groups and their delete button --------------------------------------------------------


async def test_a_group_is_deleted_by_its_button_and_leaves_metrics(
        make_client: Callable[[Settings], Any], settings: Settings) -> None:
    client = await make_client(settings.replace(admin_token=ADMIN))
    body = "# TYPE backup_ok gauge\nbackup_ok 1\n"
    path = "/metrics/job/nightly/instance/node07"
    assert (await client.put(path, data=body, headers=AUTH)).status == 200
    assert "backup_ok{" in await (await client.get("/metrics")).text()

    public = await page(client)
    ((job, grouping, row),) = GROUP_RE.findall(public)
    assert (job, grouping) == ("nightly", "{&quot;instance&quot;:&quot;node07&quot;}")
    assert "<code>instance=&quot;node07&quot;</code>" in row
    assert "disabled" in row
    assert "needs a token with the admin role" in row

    admin = {"Authorization": f"Bearer {ADMIN}"}
    signed_in = await page(client, headers=admin)
    assert 'action="/groups/delete"' in signed_in
    assert "signed in: <b>METRICS_ADMIN_TOKEN</b>" in signed_in
    form = {"job": "nightly", "labels": '{"instance":"node07"}'}
    refused = await client.post("/groups/delete", data=form, headers=AUTH)  # the push token
    assert refused.status == 403
    assert "lacks the admin role" in (await refused.json())["error"]
    done = await client.post("/groups/delete", data=form, headers=admin, allow_redirects=False)
    assert (done.status, done.headers["Location"]) == (303, "/#groups")
    assert "backup_ok{" not in await (await client.get("/metrics")).text()
    assert not GROUP_RE.findall(await page(client))
    bad = await client.post("/groups/delete", data={"job": "no/such", "labels": "{}"},
                            headers=admin)
    assert bad.status == 400
    not_a_form = await client.post("/groups/delete", json=form, headers=admin)
    assert not_a_form.status == 415


async def test_a_cookie_deletes_only_from_this_servers_own_page(
        make_client: Callable[[Settings], Any], settings: Settings) -> None:
    client = await make_client(settings.replace(admin_token=ADMIN))
    assert (await client.put("/metrics/job/j", data="x 1\n", headers=AUTH)).status == 200
    own = str(client.make_url("/")).rstrip("/")
    client.session.cookie_jar.update_cookies({COOKIE: ADMIN})
    form = {"job": "j", "labels": "{}"}
    for headers in ({"Origin": "https://elsewhere.example"}, {},
                    {"Origin": own, "Sec-Fetch-Site": "cross-site"},
                    {"Referer": "https://elsewhere.example/page"}):
        response = await client.post("/groups/delete", data=form, headers=headers)
        assert response.status == 403, headers
        assert "own page" in (await response.json())["error"]
    assert GROUP_RE.findall(await page(client))
    for headers in ({"Origin": own, "Sec-Fetch-Site": "same-origin"},
                    {"Referer": own + "/", "X-Forwarded-Host": "metrics.example.org"}):
        done = await client.post("/groups/delete", data=form, headers=headers,
                                 allow_redirects=False)
        assert done.status == 303, headers
    proxied = await client.post("/groups/delete", data=form, allow_redirects=False, headers={
        "Origin": "https://metrics.example.org", "X-Forwarded-Host": "metrics.example.org"})
    assert proxied.status == 303  # behind a reverse proxy that sets X-Forwarded-Host
    assert not GROUP_RE.findall(await page(client))


# -- the read token ------------------------------------------------------------------------


async def test_with_a_read_token_the_page_asks_once_and_keeps_it_in_a_cookie(
        make_client: Callable[[Settings], Any], settings: Settings) -> None:
    client = await make_client(settings.replace(read_token=READER))
    assert await push(client, {"source": "hpc", "metrics": {"a": 1}}) == 200
    asked = await client.get("/sources/hpc")
    assert asked.status == 401
    assert asked.content_type == "text/html"
    form_page = await asked.text()
    assert 'action="/login"' in form_page
    assert 'type="password"' in form_page
    assert 'name="next" value="/sources/hpc"' in form_page
    assert 'data-source="hpc"' not in form_page
    wrong = await client.post("/login", data={"token": "guess", "next": "/"})
    assert wrong.status == 401
    assert "not accepted" in await wrong.text()

    done = await client.post("/login", data={"token": READER, "next": "/sources/hpc"},
                             allow_redirects=False)
    assert (done.status, done.headers["Location"]) == (303, "/sources/hpc")
    cookie = done.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}={READER};")
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert attributes == {"httponly", "path", "samesite"}  # no Max-Age: the session only
    assert "SameSite=Strict" in cookie
    assert READER not in done.headers["Location"]
    text = await page(client)  # the cookie now goes with every request
    assert 'data-source="hpc"' in text
    assert "signed in: <b>METRICS_READ_TOKEN</b>" in text
    assert 'data-family="a"' in await page(client, "/sources/hpc")

    gone = await client.post("/logout", allow_redirects=False)
    assert gone.status == 303
    assert f"{COOKIE}=\"\"" in gone.headers["Set-Cookie"]
    assert (await client.get("/")).status == 401


async def test_sign_in_goes_nowhere_else_and_refuses_foreign_forms(
        make_client: Callable[[Settings], Any], settings: Settings) -> None:
    client = await make_client(settings.replace(read_token=READER))
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example", "x"):
        done = await client.post("/login", data={"token": READER, "next": target},
                                 allow_redirects=False)
        assert done.headers["Location"] == "/", target
    broken = await client.post("/login", data=b"token=x",
                               headers={"Content-Type": "multipart/form-data"})
    assert broken.status == 415
    assert broken.content_type == "text/html"
    foreign = await client.post("/login", data={"token": READER},
                                headers={"Origin": "https://evil.example"})
    assert foreign.status == 403
    assert "Set-Cookie" not in foreign.headers
    # A saved token that stopped being accepted: asked again, and the cookie forgotten.
    client.session.cookie_jar.clear()
    client.session.cookie_jar.update_cookies({COOKIE: "revoked"})
    again = await client.get("/")
    assert again.status == 401
    assert "no longer accepted" in await again.text()
    assert f"{COOKIE}=\"\"" in again.headers["Set-Cookie"]
    # The push token reads too; a bearer header works without the cookie.
    assert 'id="source-table"' not in await page(client, headers=AUTH)  # (nothing pushed)


# -- what every page carries ---------------------------------------------------------------


def csp_source(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


async def test_pages_run_only_their_own_style_and_script_and_escape_everything(
        client: Client) -> None:
    hostile = "<script>alert(1)</script>"
    label = base64.urlsafe_b64encode(hostile.encode()).decode()
    path = f"/metrics/job/evil/note@base64/{label}"
    assert (await client.put(path, data="x 1\n", headers=AUTH)).status == 200
    response = await client.get("/")
    text = await response.text()
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    style = re.search(r"<style>(.*?)</style>", text, re.DOTALL)
    script = re.search(r"<script>(.*?)</script>", text, re.DOTALL)
    assert style
    assert script
    assert text.count("<script>") == 1
    assert csp_source(style.group(1)) in CONTENT_SECURITY_POLICY
    assert csp_source(script.group(1)) in CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
    assert hostile not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert hostile not in await page(client, "/sources/evil")
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in text  # nothing fetched from the internet


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0 s"), (59, "59 s"), (300, "5 min"), (3600, "1 h"), (3720, "1 h 2 min"),
    (49 * 3600, "2 d 1 h"), (72 * 3600, "3 d")])
def test_durations_read_as_people_say_them(seconds: int, text: str) -> None:
    assert duration(seconds) == text
