"""What the stored series are, as Prometheus's metadata endpoints list them: series by
selector, label names, label values, and each family's TYPE and HELP as /metrics declares
them (a name no family declares is a gauge, "Metric from <sources>")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from metrics_ingest.families import family_of
from metrics_ingest.formats.stored import is_structured
from metrics_ingest.promql.selectors import Matcher, select
from metrics_ingest.promql.values import NAME, Labels
from metrics_ingest.store import QueryReader

# Prometheus calls an untyped family "unknown" (its text parser's MetricTypeUnknown).
METADATA_TYPES = {"untyped": "unknown"}


def matching(reader: QueryReader, selectors: Sequence[Sequence[Matcher]], since: int
             ) -> list[Labels]:
    """The label sets of the series any selector picks, sorted, each once."""
    found: set[Labels] = set()
    for matchers in selectors:
        found.update(labels for _, labels in select(reader, matchers, since))
    return sorted(found)


def label_names(reader: QueryReader, selectors: Sequence[Sequence[Matcher]], since: int
                ) -> list[str]:
    if selectors:
        names = {name for labels in matching(reader, selectors, since) for name, _ in labels}
    else:  # the label index's names; every series has a source, and a name
        names = set(reader.label_names(since))
        if names:
            names.add(NAME)
    return sorted(names)


def label_values(reader: QueryReader, name: str, selectors: Sequence[Sequence[Matcher]],
                 since: int) -> list[str]:
    if selectors:
        values = {value for labels in matching(reader, selectors, since)
                  for key, value in labels if key == name}
    else:  # one walk of the label index (the series key for names)
        values = set(reader.label_values(name, since))
    return sorted(values)


def metadata(reader: QueryReader, metric: str | None, limit: int | None
             ) -> dict[str, list[dict[str, Any]]]:
    """Each metric as /metrics (text format) declares it: under the name of its TYPE line (a
    histogram's or summary's members under their family), with the declared type and HELP,
    else gauge and "Metric from <sources>"."""
    declared = reader.families()
    sources: dict[str, set[str]] = {}
    for name, source in reader.name_sources(-2**62):
        key = is_structured(name, declared) or name
        sources.setdefault(key, set()).add(source)
    out: dict[str, list[dict[str, Any]]] = {}
    for key in sorted(sources):
        if metric is not None and key != metric:
            continue
        if limit is not None and len(out) >= limit:
            break
        meta = declared.get(family_of(key, declared))
        kind = meta.type if meta is not None else "gauge"
        help_text = (meta.help if meta is not None and meta.help
                     else "Metric from " + ", ".join(sorted(sources[key])))
        out[key] = [{"type": METADATA_TYPES.get(kind, kind), "help": help_text, "unit": ""}]
    return out
