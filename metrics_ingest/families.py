"""Metric families: which family a sample name belongs to, and whether a push's declared
types agree with what is stored (the Pushgateway's consistency check).

Only declared types are recorded (the Pushgateway API's TYPE lines, remote_write metadata).
A name no family declares is a gauge family of its own, which is what `/ingest` and Influx
pushes make. A histogram or summary claims its member names (`foo_bucket`, `foo_sum`, ...):
an undeclared push of such a name would break the family's structure and is refused.
"""

from __future__ import annotations

from collections.abc import Mapping

from metrics_ingest.model import FamilyMeta, Push

# Sample-name suffixes a family of each type owns besides (or instead of) its own name.
SUFFIXES: dict[str, tuple[str, ...]] = {
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("_count", "_sum"),
    "counter": ("_total",),
}
ALL_SUFFIXES = ("_bucket", "_count", "_sum", "_total")
STRUCTURED = ("histogram", "summary")


def family_of(name: str, families: Mapping[str, FamilyMeta]) -> str:
    """The family a sample name is exported under: itself when a family of that name is
    declared or none claims it, else the declared family whose suffix it carries."""
    if name in families:
        return name
    for suffix in ALL_SUFFIXES:
        if name.endswith(suffix):
            base = name[:-len(suffix)]
            meta = families.get(base)
            if meta is not None and suffix in SUFFIXES.get(meta.type, ()):
                return base
    return name


def claimed_names(name: str, meta: FamilyMeta) -> list[str]:
    """The sample names a structured family owns (its own name too: a summary's quantiles)."""
    if meta.type not in STRUCTURED:
        return []
    return [name, *(name + suffix for suffix in SUFFIXES[meta.type])]


class FamilyRegistry:
    """The declared families of a store, checked and extended commit by commit.

    Used by a write session on the writer's thread: `check` each push of a batch in order,
    then `adopt` what the batch declared once its transaction has committed (or `discard`
    it after a rollback).
    """

    def __init__(self, families: Mapping[str, FamilyMeta] | None = None) -> None:
        self.families: dict[str, FamilyMeta] = dict(families or {})
        self.claimed: dict[str, str] = {}
        for name, meta in self.families.items():
            self._claim(name, meta, self.claimed)
        self.pending: dict[str, FamilyMeta] = {}
        self._pending_claims: dict[str, str] = {}

    @staticmethod
    def _claim(name: str, meta: FamilyMeta, claims: dict[str, str]) -> None:
        for member in claimed_names(name, meta):
            claims[member] = name

    def known(self, name: str) -> FamilyMeta | None:
        return self.pending.get(name) or self.families.get(name)

    def check(self, push: Push) -> str | None:
        """Why `push` must be refused (nothing of it stored), or None; a push that passes has
        its declarations recorded as pending (see model.Typing for the three kinds)."""
        if push.typing == "gauges":
            return self._undeclared_clash(push)
        declared = push.families
        if not declared:
            return None
        clashes = [(name, why) for name, meta in declared.items()
                   if (why := self.clash(name, meta)) is not None]
        if clashes:
            if push.typing == "strict":
                return "; ".join(why for _, why in clashes[:5])
            for name, _ in clashes:
                del declared[name]
        for name, meta in declared.items():
            known = self.known(name)
            stored = FamilyMeta(meta.type, meta.help or (known.help if known else ""))
            if stored != known:
                self.pending[name] = stored
                self._claim(name, stored, self._pending_claims)
        return None

    def _undeclared_clash(self, push: Push) -> str | None:
        """A gauge push (no declared types) naming a member of a histogram or summary."""
        for claims in (self.claimed, self._pending_claims):
            if not claims:
                continue
            for group in push.groups:
                if claims.keys().isdisjoint(group.names):  # C-level: the usual case
                    continue
                name = next(name for name in group.names if name in claims)
                family = claims[name]
                return (f"metric {name} belongs to the {self.type_of(family)} family {family} "
                        "(pushed with its type through the Pushgateway API or remote_write); "
                        "push it the same way, or under another name")
        return None

    def type_of(self, family: str) -> str:
        known = self.known(family)
        return known.type if known is not None else "untyped"

    def clash(self, name: str, meta: FamilyMeta) -> str | None:
        """Why declaring `name` as `meta` would make the exposition inconsistent, or None."""
        known = self.known(name)
        if known is not None:
            if known.type != meta.type:
                return f"family {name} is a {known.type}, pushed as {meta.type}"
            return None
        owner = self.claimed.get(name) or self._pending_claims.get(name)
        if owner is not None and owner != name:
            return f"{name} collides with the {self.type_of(owner)} family {owner}"
        for member in claimed_names(name, meta)[1:]:
            if self.known(member) is not None:
                return f"{meta.type} {name} collides with the family {member}"
        return None

    def adopt(self) -> dict[str, FamilyMeta]:
        """Make the pending declarations stored ones; returns them (what the commit changed)."""
        adopted, self.pending = self.pending, {}
        self.families.update(adopted)
        self.claimed.update(self._pending_claims)
        self._pending_claims = {}
        return adopted

    def discard(self) -> None:
        self.pending = {}
        self._pending_claims = {}
