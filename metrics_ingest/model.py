"""The nouns every layer shares: samples, families, pushes, group operations, change records,
field errors, and the limits every format applies."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import orjson

MAX_ERRORS = 100
MAX_LABELS = 32
MAX_LABEL_VALUE = 1024
MAX_METRIC_NAME = 200
PAST_LIMIT_SECONDS = 365 * 86400
FUTURE_LIMIT_SECONDS = 3600
RESERVED_PREFIX = "metrics_ingest_"

SOURCE_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
METRIC_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
DIGITS_RE = re.compile(r"[0-9]{1,12}")


class SampleGroup(NamedTuple):
    """Samples sharing source, labels and timestamp: one pushed object's metrics.

    `names[i]` has `values[i]`. A sample's identity is (source, labels, name, timestamp).
    """

    source: str
    labels: str  # canonical JSON object with sorted keys, "" when the series has no labels
    timestamp: int
    names: list[str]
    values: list[float]


GroupKey = tuple[str, str, int]  # (source, labels, timestamp)


def group_for(groups: dict[GroupKey, SampleGroup], source: str, labels: str,
              timestamp: int) -> SampleGroup:
    """The group of (source, labels, timestamp), made on first use: a format's samples that
    share them travel as one group (fewer, larger groups for the writer)."""
    key = (source, labels, timestamp)
    group = groups.get(key)
    if group is None:
        group = groups[key] = SampleGroup(source, labels, timestamp, [], [])
    return group


class FieldError(NamedTuple):
    path: str
    error: str


class PushInvalid(ValueError):
    """The push breaks the contract; `errors` lists every problem found (at most MAX_ERRORS).

    `source`, when known, is the push's source (for the rejection counter). Picklable: a body
    parsed in a worker process raises it there and again here.
    """

    def __init__(self, errors: list[FieldError], source: str | None = None) -> None:
        self.errors = errors[:MAX_ERRORS]
        self.source = source
        first = self.errors[0]
        where = f"{first.path}: " if first.path else ""
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"{where}{first.error}{more}")

    def __reduce__(self) -> tuple[type[PushInvalid], tuple[list[FieldError], str | None]]:
        return type(self), (self.errors, self.source)


class BodyRefused(ValueError):
    """The body cannot be taken at all: `status` 400 (not the format it claims to be) or 413
    (more samples than fit in one push, found while parsing). Picklable, as PushInvalid."""

    def __init__(self, status: int, message: str, source: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.source = source

    def __reduce__(self) -> tuple[type[BodyRefused], tuple[int, str, str | None]]:
        return type(self), (self.status, self.message, self.source)


def too_many_samples(count: int, limit: int, source: str | None = None) -> BodyRefused:
    return BodyRefused(413, f"the push holds more than {limit} samples ({count} read so far); "
                            f"at most {limit} fit in one push", source)


def shorten(text: str, limit: int = 64) -> str:
    """Keep error messages small whatever the client sent (a 10 MB name must not echo back)."""
    return text if len(text) <= limit else text[:limit] + "..."


def canonical_labels(labels: dict[str, str]) -> str:
    """Stored form of a label set: sorted-key JSON ("" for none), so equal sets compare equal."""
    if not labels:
        return ""
    return orjson.dumps(labels, option=orjson.OPT_SORT_KEYS).decode()
GroupOp = Literal["put", "post", "delete", "fail"]
FamilyType = Literal["counter", "gauge", "histogram", "summary", "untyped"]
# How a push's families are typed: "gauges" declares nothing, and names a histogram or summary
# owns are refused (/ingest, Influx); "strict" declares types that must match the stored ones
# (the Pushgateway API); "soft" declares types taken when new and ignored when they clash,
# and its names join whatever family owns them (remote_write).
Typing = Literal["gauges", "strict", "soft"]


class FamilyMeta(NamedTuple):
    """A metric family's TYPE and HELP as pushed ("" when the push gave no HELP)."""

    type: FamilyType
    help: str = ""


@dataclass(frozen=True)
class Grouping:
    """A Pushgateway-API group: the job (which is the source) and the path's labels."""

    source: str
    labels: dict[str, str]

    @property
    def key(self) -> str:
        return canonical_labels(self.labels)


@dataclass
class GroupPush:
    """What a PUT/POST/DELETE asks of one group, beside the samples it carries; `fail` only
    records a refused push's time (push_failure_time_seconds), as the Pushgateway does."""

    op: GroupOp
    grouping: Grouping
    # metric name -> the family it was pushed in, for every sample of this push
    families: dict[str, str] = field(default_factory=dict)
    # every family the body declared, even one with no sample left (POST replaces it too)
    pushed_families: set[str] = field(default_factory=set)
    reason: str = ""  # for `fail`: why the push was refused
    ttl: float | None = None  # the group's own time to live (None: METRICS_GROUP_TTL)


SkipCounts = dict[tuple[str, str], int]  # (reason, source) -> samples not stored


class Parsed:
    """What a format made of one request: the samples to store, what it skipped, the family
    types it declared, and, for the Pushgateway API, what the push does to its group.
    (Plain classes with slots, here and below: one of each is made per push.)"""

    __slots__ = ("families", "group", "groups", "refusal", "skip_counts", "skipped", "stale",
                 "typing")

    def __init__(self, groups: list[SampleGroup], group: GroupPush | None = None, *,
                 skipped: list[FieldError] | None = None, skip_counts: SkipCounts | None = None,
                 families: dict[str, FamilyMeta] | None = None,
                 typing: Typing = "gauges", refusal: PushInvalid | None = None,
                 stale: list[SampleGroup] | None = None) -> None:
        self.groups = groups
        self.stale = stale  # remote_write's staleness markers (the groups' values unused)
        self.group = group
        self.refusal = refusal  # refused once what it records is committed (a failed push)
        self.skipped = skipped  # listed in the answer (at most MAX_ERRORS)
        self.skip_counts = skip_counts
        self.families = families
        self.typing = typing


class Prepared:
    """A big push's series found or created ahead of its commit, a slice at a time between
    other batches (store/preparing.py): their ids group by group, in `Push.groups` order, and
    those created for it (removed again if the push is not stored). Valid while the writer's
    series cache has not been cleared since (`clears`: series may have been deleted)."""

    __slots__ = ("clears", "created", "ids")

    def __init__(self, clears: int) -> None:
        self.clears = clears
        self.ids: list[list[int]] = []
        self.created: list[int] = []


class Push:
    """A validated push waiting for its commit; `done` resolves after the commit (or fails).

    The store sets `refused` (and stores nothing of the push) when its declared family types
    clash with the stored ones; the writer then fails `done` with PushRefused.
    """

    __slots__ = ("done", "families", "group", "groups", "prepared", "received_at", "refused",
                 "samples", "stale", "typing")

    def __init__(self, groups: list[SampleGroup], samples: int, received_at: float,
                 done: asyncio.Future[None], group: GroupPush | None = None,
                 families: dict[str, FamilyMeta] | None = None,
                 typing: Typing = "gauges", stale: list[SampleGroup] | None = None) -> None:
        self.groups = groups
        self.stale = stale  # staleness markers of stored series (Parsed.stale)
        self.samples = samples
        self.received_at = received_at
        self.done = done
        self.group = group  # a Pushgateway-API push: what it does to its group
        self.families = families
        self.typing = typing
        self.refused: str | PushRefused | None = None  # PushRefused: e.g. OverBudget
        self.prepared: Prepared | None = None


class PushRefused(Exception):
    """The store refused the push (a family type clash); nothing of it was stored."""


class OverBudget(PushRefused):
    """The push would create series beyond a series budget; nothing of it was stored."""


class Change(NamedTuple):
    """What one commit (or purge chunk, or outside writer) changed, for the /metrics cache.

    `series`: ids whose newest sample, visibility or group membership changed. `everything`:
    read every series again (a purge, another process's commit, a failed batch). `families`:
    family types or HELP texts that changed. `groups`: a push group's times changed.
    """

    series: list[int]
    everything: bool = False
    families: dict[str, FamilyMeta] | None = None
    groups: bool = False


EVERYTHING = Change([], everything=True)
