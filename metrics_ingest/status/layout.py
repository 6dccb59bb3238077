"""The status pages' frame: the inline style (light and dark, phone-width cards), the one
small script, the page shell, the sign-in form, and how times, ages, sizes and values are
written. Everything dynamic goes through `esc` (html.escape)."""

from __future__ import annotations

import base64
import hashlib
import math
from datetime import UTC, datetime
from html import escape

from metrics_ingest import __version__

COOKIE = "metrics_ingest_token"

STYLE = """
:root{color-scheme:light dark;--bg:#fff;--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;
--card:#f6f8fa;--bad:#a40e26;--bad-bg:#ffebe9;--good:#116329;--good-bg:#dafbe1;--link:#0550ae}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#9198a1;
--line:#3d444d;--card:#151b23;--bad:#ff9492;--bad-bg:#3c1618;--good:#6fdd8b;--good-bg:#12261e;
--link:#79c0ff}}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
background:var(--bg);color:var(--fg)}
header{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:center;
justify-content:space-between;padding:.6rem 1rem;border-bottom:1px solid var(--line)}
header form{display:inline}
h1{font-size:1.2rem;margin:0}h1 a{color:inherit;text-decoration:none}
h2{font-size:1.05rem;margin:1.6rem 0 .5rem}
main{padding:0 1rem 2rem;max-width:1200px;margin:0 auto}
a{color:var(--link)}
.summary{font-size:1.1rem;font-weight:600;padding:.6rem .8rem;border-radius:6px;
border:1px solid;margin:1rem 0}
.summary.bad{color:var(--bad);background:var(--bad-bg)}
.summary.good{color:var(--good);background:var(--good-bg)}
.notice{padding:.5rem .8rem;border:1px solid var(--line);border-radius:6px;
background:var(--card)}
table{width:100%;border-collapse:collapse}
th,td{text-align:left;padding:.4rem .5rem;border-bottom:1px solid var(--line);
vertical-align:top}
th{font-size:.85rem;color:var(--muted);font-weight:600}
.num{text-align:right;font-variant-numeric:tabular-nums}
tr.stale td{background:var(--bad-bg)}
tr.stale td:first-child{box-shadow:inset 4px 0 var(--bad)}
.badge{display:inline-block;padding:0 .35rem;border-radius:4px;font-size:.8rem;
font-weight:700;border:1px solid;white-space:nowrap}
.badge.stale{color:var(--bad)}.badge.ok{color:var(--good)}
small,.muted{color:var(--muted)}
time{white-space:nowrap}
code{font:.9em ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;overflow-wrap:anywhere}
ul.plain{list-style:none;margin:0;padding:0}
dl.state{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem}
dt{color:var(--muted)}dd{margin:0}
button{font:inherit;padding:.2rem .7rem;border-radius:6px;border:1px solid var(--line);
background:var(--card);color:var(--fg);cursor:pointer}
button.danger{color:var(--bad);border-color:var(--bad)}
button:disabled{opacity:.6;cursor:not-allowed}
input[type=password]{font:inherit;padding:.3rem .5rem;border:1px solid var(--line);
border-radius:6px;background:var(--bg);color:var(--fg);width:min(100%,26rem)}
.spark{color:var(--link);vertical-align:middle;max-width:100%}
@media (max-width:700px){
table.cards thead{display:none}
table.cards,table.cards tbody,table.cards tr,table.cards td{display:block;width:100%}
table.cards tr{border:1px solid var(--line);border-radius:8px;margin:.6rem 0;padding:.3rem 0}
table.cards td{border:0;padding:.15rem .6rem}
table.cards td.num{text-align:left}
table.cards td[data-label]::before{content:attr(data-label);display:block;font-size:.75rem;
color:var(--muted);font-weight:600}
table.cards td.state,table.cards td.name{display:inline-block;width:auto;
vertical-align:middle;padding-top:.3rem}
table.cards td.state::before,table.cards td.name::before,table.cards td.none{display:none}
table.cards tr.stale{background:var(--bad-bg);box-shadow:inset 4px 0 var(--bad)}
table.cards tr.stale td{background:none;box-shadow:none}
dl.state{grid-template-columns:1fr}dd{margin-bottom:.4rem}}
"""

# Asks before a delete button's form is sent (forms carry their question in data-confirm).
SCRIPT = ('document.addEventListener("submit",function(e){'
          'var q=e.target.getAttribute("data-confirm");'
          'if(q&&!window.confirm(q))e.preventDefault();});')


def csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


# Only this page's own style and script run; forms post only here; no framing (the delete
# button cannot be clicked through another site's page).
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src {csp_hash(STYLE)}; script-src {csp_hash(SCRIPT)}; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


def esc(text: object) -> str:
    return escape(str(text), quote=True)


def page(title: str, nav: str, body: str) -> str:
    """A whole page: `nav` and `body` are HTML already."""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="color-scheme" content="light dark">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>"
        f'<header><h1><a href="/">metrics-ingest</a></h1><nav>{nav}</nav></header>'
        f"<main>{body}</main><script>{SCRIPT}</script></body></html>\n")


def sign_in_form(next_path: str, message: str | None = None) -> str:
    problem = f'<p class="summary bad" role="alert">{esc(message)}</p>' if message else ""
    return (
        f'{problem}<form method="post" action="/login" class="login">'
        f'<input type="hidden" name="next" value="{esc(next_path)}">'
        '<p><label for="token">Token</label><br>'
        '<input id="token" name="token" type="password" autocomplete="current-password" '
        'required> <button type="submit">Sign in</button></p></form>'
        '<p class="muted">The token is kept for this browser session only, in a cookie the '
        "page's scripts cannot read (HttpOnly, SameSite=Strict); it never appears in a URL."
        "</p>")


def sign_in_page(next_path: str, message: str | None) -> str:
    body = ("<h2>Sign in</h2><p>This server's pages need a token with the read role "
            f"(<code>METRICS_READ_TOKEN</code>, a push token, or one from the tokens file)."
            f"</p>{sign_in_form(next_path, message)}")
    return page("metrics-ingest: sign in", "", body)


def message_page(status: int, message: str) -> str:
    body = f'<p class="summary bad" role="alert">{esc(message)}</p><p><a href="/">Back</a></p>'
    return page(f"metrics-ingest: {status}", "", body)


def nav_for(viewer: str | None, roles: frozenset[str]) -> str:
    """Who is signed in (the token's name, never the token) with a sign-out button."""
    if viewer is None:
        return '<a href="#sign-in">Sign in</a>'
    shown = ", ".join(sorted(roles))
    return (f'<span class="muted">signed in: <b>{esc(viewer)}</b> ({esc(shown)})</span> '
            '<form method="post" action="/logout"><button type="submit">Sign out</button>'
            "</form>")


# -- how things are written ----------------------------------------------------------------


def when(seconds: float) -> str:
    """A Unix time as UTC, in a <time> element."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return (f'<time datetime="{moment.strftime("%Y-%m-%dT%H:%M:%SZ")}">'
            f'{moment.strftime("%Y-%m-%d %H:%M:%S")} UTC</time>')


def duration(seconds: float) -> str:
    """`42 s`, `5 min`, `3 h 2 min`, `2 d 4 h`."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def hour_label(covers: float) -> str:
    """What the "last hour" counts span: an hour, or less since the server started."""
    return "last hour" if covers >= 3540 else "since start"


def ago(seconds: float) -> str:
    return "in the future" if seconds < -1 else f"{duration(seconds)} ago"


def size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # (not reached)


def number(value: float) -> str:
    """A sample value, short: integers whole, others to 6 significant digits."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:.6g}"


def counts(by_reason: dict[str, int]) -> str:
    """`invalid 3, auth 1`, or an em dash for none."""
    if not by_reason:
        return '<span class="muted">—</span>'
    return ", ".join(f"{esc(reason)} {count:,}" for reason, count in
                     sorted(by_reason.items(), key=lambda item: (-item[1], item[0])))


def version() -> str:
    return __version__
