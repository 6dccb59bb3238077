"""Change notices between servers sharing one store: what a commit changed, as the other
servers' /metrics caches need it. PostgreSQL carries them by NOTIFY (postgres/feed.py),
SQLite workers by the `changes` table (sqlite/feed.py).

A notice is `<origin> <flags> <blocks>`: the sending server's id, flags (`e` read
everything again, `g` push-group times changed) and the series it touched as blocks of
2**BLOCK_BITS ids in base 36. /metrics caches by ranges of at least that size, so a block
names every range to re-read. A notice that would exceed PostgreSQL's 8000-byte payload
says `e` instead.
"""

from __future__ import annotations

from metrics_ingest.model import EVERYTHING, Change

BLOCK_BITS = 10
MAX_PAYLOAD = 7900
DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def base36(number: int) -> str:
    if number == 0:
        return "0"
    out = []
    while number:
        number, digit = divmod(number, 36)
        out.append(DIGITS[digit])
    return "".join(reversed(out))


def encode_change(origin: str, change: Change) -> str:
    everything = change.everything or change.families is not None
    flags = ("e" if everything else "") + ("g" if change.groups else "") or "-"
    if everything:
        return f"{origin} {flags} "
    blocks = ",".join(base36(block) for block in sorted({i >> BLOCK_BITS for i in change.series}))
    if len(blocks) + len(origin) + 8 > MAX_PAYLOAD:
        return f"{origin} e{flags.strip('-')} "
    return f"{origin} {flags} {blocks}"


def decode_change(payload: str) -> tuple[str, Change]:
    """(origin, change); a notice that does not parse means: read everything."""
    origin, _, rest = payload.partition(" ")
    flags, _, blocks = rest.partition(" ")
    try:
        if "e" in flags or not flags:
            return origin, Change([], everything=True, groups="g" in flags)
        series = [int(block, 36) << BLOCK_BITS for block in blocks.split(",") if block]
    except ValueError:
        return origin, EVERYTHING
    return origin, Change(series, groups="g" in flags)
