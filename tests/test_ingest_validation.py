"""The pure push validator: the Worker's payload shape, every rule of SPEC section 3."""

from __future__ import annotations

from typing import Any

import pytest

from metrics_ingest.formats.json_push import parse_push, push_source
from metrics_ingest.model import MAX_ERRORS, PushInvalid, SampleGroup, canonical_labels

NOW = 1_750_000_000.0


def push(**fields: Any) -> dict[str, Any]:
    return {"source": "hpc", "metrics": {"slurm_pending_jobs": 42}, **fields}


def errors_of(payload: Any, now: float = NOW) -> list[tuple[str, str]]:
    with pytest.raises(PushInvalid) as caught:
        parse_push(payload, now)
    return [(error.path, error.error) for error in caught.value.errors]


def test_worker_payload() -> None:
    payload = {"source": "hpc", "timestamp": 1_749_999_000,
               "metrics": {"slurm_pending_jobs": 42, "slurm_running_jobs": 10.5}}
    assert parse_push(payload, NOW) == [SampleGroup(
        "hpc", "", 1_749_999_000, ["slurm_pending_jobs", "slurm_running_jobs"], [42.0, 10.5])]


@pytest.mark.parametrize(("timestamp", "expected"), [
    (None, int(NOW)),
    (1_749_999_000, 1_749_999_000),
    (1_749_999_000.9, 1_749_999_000),
    ("1749999000", 1_749_999_000),
    (int(NOW) - 365 * 86400, int(NOW) - 365 * 86400),
    (int(NOW) + 3600, int(NOW) + 3600),
])
def test_timestamp_forms(timestamp: Any, expected: int) -> None:
    payload = push() if timestamp is None else push(timestamp=timestamp)
    assert parse_push(payload, NOW)[0].timestamp == expected


@pytest.mark.parametrize(("timestamp", "error"), [
    (int(NOW) - 365 * 86400 - 1, "is more than 365 days in the past"),
    (int(NOW) + 3601, "is more than 1 hour in the future"),
    ("17e8", "must be Unix seconds"),
    ("-5", "must be Unix seconds"),
    ("9" * 5000, "must be Unix seconds"),
    (True, "must be Unix seconds"),
    ([], "must be Unix seconds"),
    (float("nan"), "must be Unix seconds"),
])
def test_timestamp_rejected(timestamp: Any, error: str) -> None:
    [(path, message)] = errors_of(push(timestamp=timestamp))
    assert path == "timestamp"
    assert message.startswith(error)


@pytest.mark.parametrize(("source", "ok"), [
    ("hpc", True), ("a" * 64, True), ("node-1.cluster_a", True),
    ("", False), ("a" * 65, False), ("has space", False), ("quote\"", False),
    ("new\nline", False), (42, False), (None, False),
])
def test_source_rules(source: Any, ok: bool) -> None:
    payload = push(source=source)
    if ok:
        assert parse_push(payload, NOW)[0].source == source
    else:
        assert errors_of(payload)[0][0] == "source"


@pytest.mark.parametrize(("metrics", "path", "error"), [
    (None, "metrics", "is required and must be a non-empty object"),
    ({}, "metrics", "is required and must be a non-empty object"),
    ([1], "metrics", "is required and must be a non-empty object"),
    ({"9lives": 1}, "metrics.9lives", "metric name must match"),
    ({"a-b": 1}, "metrics.a-b", "metric name must match"),
    ({"x" * 201: 1}, "metrics." + "x" * 64 + "...", "metric name is longer than 200"),
    ({"metrics_ingest_up": 1}, "metrics.metrics_ingest_up", "metric names starting"),
    ({"ok": True}, "metrics.ok", "must be a number"),
    ({"ok": None}, "metrics.ok", "must be a number"),
    ({"ok": "1"}, "metrics.ok", "must be a number"),
    ({"ok": {"nested": 1}}, "metrics.ok", "must be a number"),
    ({"ok": float("inf")}, "metrics.ok", "must be a finite number"),
])
def test_metric_rules(metrics: Any, path: str, error: str) -> None:
    [(got_path, message)] = errors_of({"source": "hpc", "metrics": metrics})
    assert got_path == path
    assert message.startswith(error)


def test_metric_names_allow_colons_and_big_values() -> None:
    [group] = parse_push(push(metrics={"job:rate5m": 2**64, "neg": -0.0}), NOW)
    assert (group.names, group.values) == (["job:rate5m", "neg"], [float(2**64), 0.0])


def test_labels_are_canonical() -> None:
    samples = parse_push(push(labels={"zone": "b", "partition": "gpu"}), NOW)
    assert samples[0].labels == '{"partition":"gpu","zone":"b"}'
    assert canonical_labels({}) == ""


@pytest.mark.parametrize(("labels", "path", "error"), [
    ("gpu", "labels", "must be an object"),
    ({"bad-name": "x"}, "labels.bad-name", "label name must match"),
    ({"__name__": "x"}, "labels.__name__", "label names starting __ are reserved"),
    ({"source": "x"}, "labels.source", "label name source is reserved"),
    ({"a": ""}, "labels.a", "label value must be a non-empty string"),
    ({"a": 1}, "labels.a", "label value must be a non-empty string"),
    ({"a": "x" * 1025}, "labels.a", "label value is longer than 1024"),
    ({f"l{i}": "v" for i in range(33)}, "labels", "has more than 32 labels"),
])
def test_label_rules(labels: Any, path: str, error: str) -> None:
    [(got_path, message)] = errors_of(push(labels=labels))
    assert got_path == path
    assert message.startswith(error)


def test_label_values_may_hold_anything_printable_or_not() -> None:
    value = 'quote " backslash \\ newline \n end'
    assert parse_push(push(labels={"a": value}), NOW)[0].labels == (
        '{"a":"quote \\" backslash \\\\ newline \\n end"}')


def test_every_problem_is_listed() -> None:
    payload = {"source": "", "timestamp": "x", "labels": {"__a": "1"},
               "metrics": {"ok": 1, "b-ad": 2, "c": "3"}}
    assert [path for path, _ in errors_of(payload)] == [
        "source", "timestamp", "labels.__a", "metrics.b-ad", "metrics.c"]


def test_errors_are_capped() -> None:
    payload = push(metrics={f"bad-{i}": 1 for i in range(500)})
    assert len(errors_of(payload)) == MAX_ERRORS


def test_batch_is_all_or_nothing() -> None:
    good = push()
    assert len(parse_push([good, good], NOW)) == 2
    assert sum(len(group.names) for group in parse_push([good, good], NOW)) == 2
    assert errors_of([good, {"source": "x"}, "no"]) == [
        ("[1].metrics", "is required and must be a non-empty object"),
        ("[2]", "must be a JSON object"),
    ]
    assert errors_of([]) == [("", "an array push must hold at least one object")]


@pytest.mark.parametrize("payload", [None, 42, "text", True])
def test_non_object_body(payload: Any) -> None:
    assert errors_of(payload) == [("", "must be a JSON object")]


def test_other_keys_are_ignored() -> None:
    assert len(parse_push(push(extra={"anything": [1, 2]}), NOW)) == 1


def test_push_source_for_counters() -> None:
    assert push_source(push()) == "hpc"
    assert push_source([push(), push(source="b")]) is None
    assert push_source({"source": "bad source"}) is None
    assert push_source("junk") is None
    assert push_source([{"source": {}}, {"source": []}]) is None  # unhashable, not a crash
    assert push_source([push(), "junk"]) is None


@pytest.mark.parametrize(("metrics", "valid"), [
    ({"a" * 200: 1}, True),
    ({"a" * 201: 1}, False),
    ({"my_metrics_ingest_total": 1}, True),
    ({"ok": 1, "metrics_ingest_x": 2}, False),
    ({"ok": 1, "bad\nname": 2}, False),
    ({"ok": 1, "": 2}, False),
    ({"ok": 1, "x": 10**400}, False),
    ({"ok": 1, "x": True}, False),
    ({"ok": 1.5, "x": -7, ":colon": 0}, True),
])
def test_fast_and_slow_paths_agree(metrics: dict[str, Any], valid: bool) -> None:
    payload = push(metrics=metrics)
    if valid:
        [group] = parse_push(payload, NOW)
        assert group.names == list(metrics)
        assert group.values == [float(v) for v in metrics.values()]
    else:
        assert errors_of(payload)
