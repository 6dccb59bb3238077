"""RESULTS.md and results.png from the JSON lines in bench/results/: the newest full run's
figures, the ratios the performance issue sets as bars, and whether each bar is met."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Key = tuple[str, str, str]  # (workload, system, metric)


@dataclass
class Figure:
    value: float  # the median run
    runs: list[float]  # every run (just the value when it was measured once)


Values = dict[Key, Figure]


@dataclass
class Bar:
    name: str
    describe: str
    compute: Callable[[Values], tuple[float, float] | None]  # (median, worst run)
    threshold: float
    higher_is_better: bool
    informational: bool = False  # shown for context; not one of the issues' bars

    def verdict(self, worst: float | None) -> str:
        """Met only when the worst run meets the bar: a figure that moves between runs
        measures the set-up, not the system."""
        if worst is None:
            return "not measured"
        ok = worst >= self.threshold if self.higher_is_better else worst <= self.threshold
        if self.informational:
            return "(context) above" if ok else "(context) below"
        return "met" if ok else "MISSED"


def ratio(a: Key, b: Key, higher_is_better: bool = True) -> Callable[
        [Values], tuple[float, float] | None]:
    """a ÷ b at the medians, and the worst of the rounds: run i of a against run i of b,
    measured next to each other (interleaved), when both have as many runs; else the worst
    pairing of any two runs. (Pairing across rounds measured the machine: on this shared
    VM one round ran 15.7k req/s and the next 11.8k for both systems alike.)"""
    def compute(values: Values) -> tuple[float, float] | None:
        if a not in values or b not in values or not values[b].value:
            return None
        top, bottom = values[a], values[b]
        if len(top.runs) == len(bottom.runs) and all(bottom.runs):
            rounds = [t / b for t, b in zip(top.runs, bottom.runs, strict=True)]
            worst = min(rounds) if higher_is_better else max(rounds)
        elif higher_is_better:
            worst = min(top.runs) / max(bottom.runs)
        else:
            worst = max(top.runs) / max(min(bottom.runs), 1e-12)
        return top.value / bottom.value, worst

    return compute


def value_of(key: Key, higher_is_better: bool = False) -> Callable[
        [Values], tuple[float, float] | None]:
    def compute(values: Values) -> tuple[float, float] | None:
        figure = values.get(key)
        if figure is None:
            return None
        return figure.value, min(figure.runs) if higher_is_better else max(figure.runs)

    return compute


MI = "metrics-ingest"
BARS = [
    Bar("W1 vs Pushgateway", "metrics-ingest req/s ÷ Pushgateway (default) req/s",
        ratio(("W1", MI, "req_per_s"), ("W1", "pushgateway", "req_per_s")), 2.0, True),
    Bar("W1 vs bare aiohttp", "metrics-ingest req/s ÷ bare aiohttp JSON handler req/s",
        ratio(("W1", MI, "req_per_s"), ("W1", "bare-aiohttp", "req_per_s")), 0.6, True),
    Bar("W2 vs own W1", "req/s with 10k series stored ÷ metrics-ingest W1 req/s",
        ratio(("W2", MI, "req_per_s"), ("W1", MI, "req_per_s")), 0.9, True),
    Bar("W3 vs raw sqlite3", "committed samples/s ÷ raw executemany of the same upserts into "
        "the same schema, samples/s",
        ratio(("W3", MI, "samples_per_s"), ("W3", "raw-sqlite", "samples_per_s")), 0.6, True),
    Bar("W3 vs Pushgateway", "samples/s ÷ Pushgateway samples/s (same pushes)",
        ratio(("W3", MI, "samples_per_s"), ("W3", "pushgateway", "samples_per_s")), 1.5, True),
    Bar("W4 10k vs Pushgateway", "Pushgateway scrape time ÷ metrics-ingest scrape time (10k)",
        ratio(("W4", "pushgateway", "scrape_ms_10000"), ("W4", MI, "scrape_ms_10000")),
        1.0, True),
    Bar("W4 100k ÷ 10k", "scrape time with 100k series ÷ with 10k",
        ratio(("W4", MI, "scrape_ms_100000"), ("W4", MI, "scrape_ms_10000"), False), 10.0,
        False),
    Bar("W4 10k after a push", "Pushgateway scrape ÷ metrics-ingest scrape when a push "
        "landed since the previous scrape",
        ratio(("W4", "pushgateway", "scrape_ms_10000"),
              ("W4", MI, "scrape_after_push_ms_10000")), 1.0, True, informational=True),
    Bar("W4 100k ÷ 10k after a push", "the same ratio when a push lands before every scrape",
        ratio(("W4", MI, "scrape_after_push_ms_100000"), ("W4", MI, "scrape_after_push_ms_10000"),
              False), 10.0, False, informational=True),
    Bar("W8 Pushgateway text vs Pushgateway", "samples/s of 1,000-sample PUTs ÷ the "
        "Pushgateway's", ratio(("W8", MI, "pushgateway_samples_per_s"),
                               ("W8", "pushgateway", "pushgateway_samples_per_s")),
        1.0, True, informational=True),
    Bar("W8 Influx vs VictoriaMetrics", "samples/s of 1,000-line writes ÷ VictoriaMetrics'",
        ratio(("W8", MI, "influx_samples_per_s"), ("W8", "victoriametrics",
                                                   "influx_samples_per_s")),
        1.0, True, informational=True),
    Bar("W8 remote_write vs VictoriaMetrics", "samples/s of 1,000-sample batches ÷ "
        "VictoriaMetrics'", ratio(("W8", MI, "remote_write_samples_per_s"),
                                  ("W8", "victoriametrics", "remote_write_samples_per_s")),
        1.0, True, informational=True),
    Bar("W5 /api/metrics", "median ms, limit 10000 over 10M samples",
        value_of(("W5", MI, "api_metrics_ms")), 50.0, False),
    Bar("W5 /api/sources", "median ms over 10M samples",
        value_of(("W5", MI, "api_sources_ms")), 10.0, False),
    Bar("W6 p99 during purge", "push p99 during a ≥1M-sample purge ÷ W1 p99",
        ratio(("W6", MI, "p99_ms_during_purge"), ("W1", MI, "p99_ms"), False), 3.0, False),
    Bar("W6 errors", "failed pushes during the purge",
        value_of(("W6", MI, "errors_during_purge")), 0.0, False),
    Bar("W7 bytes/sample", "database bytes ÷ samples after W3",
        value_of(("W7", MI, "bytes_per_sample")), 30.0, False),
    Bar("W7 peak RSS W1", "MB", value_of(("W7", MI, "peak_rss_mb_w1")), 150.0, False),
    Bar("W7 peak RSS W3", "MB", value_of(("W7", MI, "peak_rss_mb_w3")), 150.0, False),
    Bar("W9 range query vs Prometheus", "ms of a 6 h query_range at 15 s, sum by (source) "
        "(rate()) over 1,000 of 10,000 series, ÷ Prometheus 2.42's over the same samples",
        ratio(("W9", MI, "range_6h_ms"), ("W9", "prometheus", "range_6h_ms"), False), 3.0,
        False),
    Bar("W9 instant query vs Prometheus", "ms of sum by (source) (rate(x[5m])) over 10,000 "
        "series ÷ Prometheus's", ratio(("W9", MI, "instant_10k_ms"),
                                        ("W9", "prometheus", "instant_10k_ms"), False),
        3.0, False),
    Bar("W9 metric names vs Prometheus", "ms of /api/v1/label/__name__/values ÷ Prometheus's",
        ratio(("W9", MI, "label_names_ms"), ("W9", "prometheus", "label_names_ms"), False),
        3.0, False),
    Bar("W9 push p99 during a query", "W1's push p99 while the range query runs back to back "
        "÷ without it (same server, same run)",
        ratio(("W9", MI, "push_p99_ms_during_query"), ("W9", MI, "push_p99_ms_idle"), False),
        2.0, False),
    Bar("W10 RSS at 1M series", "MB after pushing a million series",
        value_of(("W10", MI, "rss_after_mb")), 300.0, False),
    Bar("W10 first scrape", "s, the first /metrics after the million series",
        value_of(("W10", MI, "first_scrape_s")), 2.0, False),
    Bar("W10 first gzip scrape", "s", value_of(("W10", MI, "first_gzip_scrape_s")), 2.0,
        False),
    Bar("W10 steady scrape", "s", value_of(("W10", MI, "steady_scrape_s")), 2.0, False),
    Bar("W10 /api/sources", "ms at a million series", value_of(("W10", MI, "api_sources_ms")),
        50.0, False),
    Bar("W11 small-push p99 during big bodies", "p99 while three 6 MB Influx bodies and a "
        "300k-series remote_write are parsed ÷ idle p99",
        value_of(("W11", MI, "p99_ratio")), 3.0, False),
    Bar("W12 PostgreSQL W3 vs SQLite W3", "samples/s of W3 on PostgreSQL ÷ on SQLite, "
        "interleaved", ratio(("W12", "metrics-ingest-postgres", "w3_samples_per_s"),
                             ("W12", "metrics-ingest-sqlite", "w3_samples_per_s")), 0.5, True),
    Bar("W12 PostgreSQL W1 vs SQLite W1", "req/s of W1 on PostgreSQL ÷ on SQLite",
        ratio(("W12", "metrics-ingest-postgres", "w1_req_per_s"),
              ("W12", "metrics-ingest-sqlite", "w1_req_per_s")), 0.5, True, informational=True),
    Bar("W13 --workers 2 vs 1", "W1 req/s with two workers ÷ one, SQLite",
        ratio(("W13", "metrics-ingest-workers-2", "req_per_s"),
              ("W13", "metrics-ingest-workers-1", "req_per_s")), 1.6, True),
    Bar("W13 ceiling: bare aiohttp 2 vs 1", "W1 req/s of the bare aiohttp handler in two "
        "processes on one port ÷ one, same run", ratio(("W13", "bare-aiohttp-2", "req_per_s"),
                                                    ("W13", "bare-aiohttp-1", "req_per_s")),
        1.6, True, informational=True),
    Bar("W14 2 replicas vs 1", "W1 req/s over two PostgreSQL replicas ÷ one",
        ratio(("W14", "metrics-ingest-postgres-x2", "req_per_s"),
              ("W14", "metrics-ingest-postgres-x1", "req_per_s")), 1.5, True),
    Bar("W15 tokens file vs none", "W1 req/s with a 1,000-entry tokens file ÷ without",
        ratio(("W15", "metrics-ingest-tokens-file", "req_per_s"),
              ("W15", "metrics-ingest", "req_per_s")), 0.95, True),
]


def newest_run(results: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    runs: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    skipped: set[str] = set()
    for path in sorted(results.glob("[0-9]*.jsonl")):  # YYYYMMDD.jsonl: full runs only
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if "meta" in row:
                if row["meta"].get("only"):  # a run of some workloads (--only) is no full run
                    skipped.add(row["meta"]["run"])
                runs.setdefault(row["meta"]["run"], (row["meta"], []))
            else:
                runs.setdefault(row["run"], ({"run": row["run"]}, []))[1].append(row)
    for run in skipped:
        runs.pop(run, None)
    if not runs:
        raise SystemExit("no full runs in bench/results/")
    return runs[max(runs)]


def write(results: Path, markdown: Path, png: Path) -> None:
    meta, rows = newest_run(results)
    values: Values = {(r["workload"], r["system"], r["metric"]):
                      Figure(float(r["value"]), [float(v) for v in r.get("runs") or
                                                 [r["value"]]])
                      for r in rows}
    lines = [
        "# Benchmark results",
        "",
        f"Newest full run `{meta['run']}` (git `{meta.get('git', '?')}`), generated by "
        "`bench/compare` on this repository's 2-core development machine; every figure below "
        f"comes from that one run. Load: {meta.get('generator', 'wrk')} -t1, "
        f"{meta.get('seconds', 10):g} s per run, {meta.get('repeat', 3)} runs, each against a "
        "system started afresh; the figure is the median run, and a bar is met only when its "
        "worst run meets it.",
        "",
        "## Bars",
        "",
        "| bar | what | median | worst run | bar | verdict |",
        "|---|---|---|---|---|---|",
    ]
    measured: list[tuple[str, float, Bar]] = []
    for bar in BARS:
        computed = bar.compute(values)
        median, worst = computed if computed is not None else (None, None)
        shown = "—" if median is None else f"{median:,.2f}"
        shown_worst = "—" if worst is None else f"{worst:,.2f}"
        sign = "≥" if bar.higher_is_better else "≤"
        lines.append(f"| {bar.name} | {bar.describe} | {shown} | {shown_worst} | "
                     f"{sign} {bar.threshold:g} | {bar.verdict(worst)} |")
        if worst is not None:
            measured.append((bar.name, worst, bar))
    lines += ["", "## Figures", "", "| workload | system | metric | median | spread "
              "(min-max) | details |", "|---|---|---|---|---|---|"]
    for r in rows:
        details = {k: v for k, v in r.items()
                   if k in ("p50_ms", "p99_ms", "non_2xx", "socket_errors", "generator_cpu_pct",
                            "samples_committed", "samples_acked_by_wrk", "rows_in_db",
                            "pushes_counted", "rows_counted", "series_exported",
                            "rows_returned", "purged", "rows", "series")}
        spread = (f"{r['low']:,.2f} .. {r['high']:,.2f}" if "low" in r else "")
        lines.append(f"| {r['workload']} | {r['system']} | {r['metric']} | "
                     f"{r['value']:,.2f} | {spread} | "
                     f"{json.dumps(details) if details else ''} |")
    lines += ["", "![ratios](results.png)", "",
              "Reproduce: `bench/compare` (about 20 minutes; installs wrk, "
              "prometheus-pushgateway and victoria-metrics with apt-get when missing).", ""]
    markdown.write_text("\n".join(lines))
    plot(measured, png)


def plot(measured: list[tuple[str, float, Bar]], png: Path) -> None:
    """Each bar as headroom: measured ÷ threshold (or its inverse), so 1.0 is the line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, scores, colours = [], [], []
    for name, value, bar in measured:
        if bar.informational:
            continue
        if bar.threshold == 0:
            score = 1.0 if value == 0 else 0.0
        elif bar.higher_is_better:
            score = value / bar.threshold
        else:
            score = bar.threshold / value if value else 10.0
        names.append(name)
        scores.append(min(score, 10.0))
        colours.append("#2e7d32" if score >= 1 else "#c62828")
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 1.2))
    ax.barh(names[::-1], scores[::-1], color=colours[::-1])
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("headroom over the bar (≥ 1 means met; log scale, capped at 10)")
    ax.set_title("metrics-ingest: performance bars (worst run), one bench/compare run")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
