"""The pure push validator: the Worker's payload shape, every rule of SPEC section 3, and the
Worker's leniency: a metric with a bad name or value is skipped and listed, not fatal."""

from __future__ import annotations

from typing import Any

import pytest

from metrics_ingest.formats.json_push import parse_push, push_source
from metrics_ingest.model import MAX_ERRORS, PushInvalid, SampleGroup, canonical_labels

NOW = 1_750_000_000.0


def push(**fields: Any) -> dict[str, Any]:
    return {"source": "hpc", "metrics": {"slurm_pending_jobs": 42}, **fields}


def errors_of(payload: Any, now: float = NOW, strict: bool = False) -> list[tuple[str, str]]:
    with pytest.raises(PushInvalid) as caught:
        parse_push(payload, now, strict)
    return [(error.path, error.error) for error in caught.value.errors]


def groups_of(payload: Any) -> list[SampleGroup]:
    return parse_push(payload, NOW).groups


def test_worker_payload() -> None:
    payload = {"source": "hpc", "timestamp": 1_749_999_000,
               "metrics": {"slurm_pending_jobs": 42, "slurm_running_jobs": 10.5}}
    parsed = parse_push(payload, NOW)
    assert parsed.groups == [SampleGroup(
        "hpc", "", 1_749_999_000, ["slurm_pending_jobs", "slurm_running_jobs"], [42.0, 10.5])]
    assert parsed.skipped is None
    assert parsed.skip_counts is None


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
    assert groups_of(payload)[0].timestamp == expected


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
        assert groups_of(payload)[0].source == source
    else:
        assert errors_of(payload)[0][0] == "source"


@pytest.mark.parametrize("metrics", [None, {}, [1]])
def test_metrics_object_is_required(metrics: Any) -> None:
    assert errors_of({"source": "hpc", "metrics": metrics}) == [
        ("metrics", "is required and must be a non-empty object")]


@pytest.mark.parametrize(("metrics", "path", "error", "reason"), [
    ({"9lives": 1}, "metrics.9lives", "metric name must match", "invalid_name"),
    ({"a-b": 1}, "metrics.a-b", "metric name must match", "invalid_name"),
    ({"x" * 201: 1}, "metrics." + "x" * 64 + "...", "metric name is longer than 200",
     "invalid_name"),
    ({"metrics_ingest_up": 1}, "metrics.metrics_ingest_up", "metric names starting",
     "reserved_name"),
    ({"ok": True}, "metrics.ok", "must be a number", "not_a_number"),
    ({"ok": None}, "metrics.ok", "must be a number", "not_a_number"),
    ({"ok": "1"}, "metrics.ok", "must be a number", "not_a_number"),
    ({"ok": {"nested": 1}}, "metrics.ok", "must be a number", "not_a_number"),
    ({"ok": float("inf")}, "metrics.ok", "must be a finite number", "non_finite"),
])
def test_bad_metrics_are_skipped(metrics: dict[str, Any], path: str, error: str,
                                 reason: str) -> None:
    parsed = parse_push({"source": "hpc", "metrics": {"good": 1, **metrics}}, NOW)
    assert [(group.names, group.values) for group in parsed.groups] == [(["good"], [1.0])]
    assert parsed.skipped is not None
    [(got_path, message)] = [(skip.path, skip.error) for skip in parsed.skipped]
    assert got_path == path
    assert message.startswith(error)
    assert parsed.skip_counts == {(reason, "hpc"): 1}
    # Nothing left to store is a push-level problem; strict makes any skip one.
    alone = errors_of({"source": "hpc", "metrics": metrics})
    assert alone[0] == ("metrics", "nothing left to store: no metric has a valid name and a "
                                   "finite number")
    assert alone[1][0] == path
    strict = errors_of({"source": "hpc", "metrics": {"good": 1, **metrics}}, strict=True)
    assert [got for got, _ in strict] == [path]


def test_metric_names_allow_colons_and_big_values() -> None:
    [group] = groups_of(push(metrics={"job:rate5m": 2**64, "neg": -0.0}))
    assert (group.names, group.values) == (["job:rate5m", "neg"], [float(2**64), 0.0])


def test_labels_are_canonical() -> None:
    samples = groups_of(push(labels={"zone": "b", "partition": "gpu"}))
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
    assert groups_of(push(labels={"a": value}))[0].labels == (
        '{"a":"quote \\" backslash \\\\ newline \\n end"}')


def test_every_problem_is_listed() -> None:
    payload = {"source": "", "timestamp": "x", "labels": {"__a": "1"},
               "metrics": {"ok": 1, "b-ad": 2, "c": "3"}}
    assert [path for path, _ in errors_of(payload)] == ["source", "timestamp", "labels.__a"]
    assert [path for path, _ in errors_of(payload, strict=True)] == [
        "source", "timestamp", "labels.__a", "metrics.b-ad", "metrics.c"]


def test_errors_and_skips_are_capped() -> None:
    payload = push(metrics={f"bad-{i}": 1 for i in range(500)})
    assert len(errors_of(payload)) == MAX_ERRORS
    parsed = parse_push(push(metrics={"ok": 1, **{f"bad-{i}": 1 for i in range(500)}}), NOW)
    assert parsed.skipped is not None
    assert len(parsed.skipped) == MAX_ERRORS
    assert parsed.skip_counts == {("invalid_name", "hpc"): 500}


def test_skips_in_a_batch_count_by_source() -> None:
    parsed = parse_push([push(metrics={"a": 1, "b": "x"}),
                         push(source="web", metrics={"c": 1, "d": None, "e": True})], NOW)
    assert parsed.skip_counts == {("not_a_number", "hpc"): 1, ("not_a_number", "web"): 2}
    assert [skip.path for skip in parsed.skipped or []] == [
        "[0].metrics.b", "[1].metrics.d", "[1].metrics.e"]


def test_batch_is_all_or_nothing() -> None:
    good = push()
    assert len(groups_of([good, good])) == 2
    assert sum(len(group.names) for group in groups_of([good, good])) == 2
    assert errors_of([good, {"source": "x"}, "no"]) == [
        ("[1].metrics", "is required and must be a non-empty object"),
        ("[2]", "must be a JSON object"),
    ]
    assert errors_of([]) == [("", "an array push must hold at least one object")]


@pytest.mark.parametrize("payload", [None, 42, "text", True])
def test_non_object_body(payload: Any) -> None:
    assert errors_of(payload) == [("", "must be a JSON object")]


def test_other_keys_are_ignored() -> None:
    assert len(groups_of(push(extra={"anything": [1, 2]}))) == 1


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
    parsed = parse_push(push(metrics={"keep": 1, **metrics}), NOW)
    [group] = parsed.groups
    if valid:
        assert group.names == ["keep", *metrics]
        assert group.values == [1.0, *(float(v) for v in metrics.values())]
        assert parsed.skipped is None
    else:
        assert group.names[0] == "keep"
        assert len(group.names) < len(metrics) + 1
        assert parsed.skipped
