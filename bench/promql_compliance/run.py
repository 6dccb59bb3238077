"""The Prometheus PromQL compliance suite (prometheus/compliance, promql/) against
metrics-ingest, in Python: the suite's test queries expanded as its tester expands them, data
shaped like its demo service written as the same remote_write requests to a real Prometheus
2.42 (the reference) and to metrics-ingest, every case asked of both as client_golang asks
(a form POST to /api/v1/query_range, times as Unix seconds with nanoseconds, step 10 s, over
the tester's window: the ten minutes ending twelve minutes before the newest data) and
compared as its comparer compares. Prints the score as the tester does, and the failures
grouped by cause.

    .venv/bin/python -m bench.promql_compliance [--engine sqlite|postgres] [--milliseconds]
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench import systems
from bench.promql_compliance import demo
from bench.promql_compliance.cases import Case, load_cases
from bench.promql_compliance.comparer import Answer, Result, cause, compare, decode
from bench.systems import TOKEN, Running

RESULTS = Path(__file__).resolve().parent.parent / "results" / "promql_compliance.jsonl"
SPAN = 100 * 60  # seconds of data: the window, its longest range (1h) and offset (10m), margin
END_BEFORE = 12 * 60  # the tester's default end: twelve minutes before now
WINDOW = 10 * 60  # its default range
STEP = 10  # its default resolution, seconds
RW_HEADERS = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
              "X-Prometheus-Remote-Write-Version": "0.1.0"}


@dataclass
class Report:
    results: list[Result]
    seconds: dict[str, float] = field(default_factory=dict)
    samples: int = 0

    @property
    def passed(self) -> int:
        return sum(result.success for result in self.results)

    @property
    def unsupported(self) -> int:
        return sum(result.unsupported for result in self.results)

    @property
    def answered(self) -> int:
        """Cases whose reference answer holds at least one series."""
        return sum(result.reference_series > 0 for result in self.results)

    def failures(self) -> list[Result]:
        return [result for result in self.results if not result.success]

    def summary(self) -> str:
        """The tester's last line."""
        total = len(self.results)
        return (f"Total: {self.passed} / {total} ({100 * self.passed / total:.2f}%) passed, "
                f"{self.unsupported} unsupported")


def go_seconds(nanos: int) -> str:
    """client_golang's formatTime: FormatFloat(unix + ns/1e9, 'f', -1, 64)."""
    from metrics_ingest.promql.values import positional

    return positional(repr(nanos // 10**9 + (nanos % 10**9) / 1e9))


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def query_range(base: str, case: Case, start: str, end: str) -> Answer:
    form = urllib.parse.urlencode({"query": case.query, "start": start, "end": end,
                                   "step": str(STEP)}).encode()
    status, body = post(f"{base}/api/v1/query_range", form,
                        {"Content-Type": "application/x-www-form-urlencoded"})
    try:
        parsed = json.loads(body)
    except ValueError:
        return Answer(None, f"{status} (not JSON): {body[:200]!r}")
    return decode(status, parsed)


def load(name: str, url: str, bodies: list[bytes]) -> None:
    """Every body to the target's /api/v1/write, in order (each must be stored)."""
    headers = {**RW_HEADERS, "Authorization": f"Bearer {TOKEN}"}
    for body in bodies:
        status, answer = post(f"{url}/api/v1/write", body, headers)
        if status // 100 != 2:
            raise RuntimeError(f"{name} refused a remote_write body: {status} {answer[:300]!r}")


@contextmanager
def systems_under_test(root: Path, engine: str, db_url: str | None = None
                       ) -> Iterator[tuple[Running, Running]]:
    """The reference Prometheus (remote_write receiver on) and metrics-ingest, on SQLite or
    PostgreSQL (a cluster of its own, or the database at `db_url`), stopped after."""
    reference = systems.prometheus(root / "prometheus",
                                   flags=("--web.enable-remote-write-receiver",))
    try:
        workdir = root / "metrics-ingest"
        workdir.mkdir()
        start: Callable[[Path], Running] = systems.metrics_ingest
        if db_url is not None:
            start = functools.partial(systems.metrics_ingest, env={"METRICS_DB_PATH": db_url})
        elif engine == "postgres":
            start = systems.metrics_ingest_postgres
        tested = start(workdir)
        try:
            yield reference, tested
        finally:
            tested.stop()
    finally:
        reference.stop()


@dataclass(frozen=True)
class Data:
    """The remote_write bodies of SPAN seconds of demo data ending at `now` (Unix s)."""

    now: float
    bodies: list[bytes]

    @classmethod
    def make(cls, now: float | None = None, milliseconds: bool = False) -> Data:
        wall = time.time() if now is None else now
        return cls(wall, list(demo.write_bodies(int(wall) - SPAN, int(wall), milliseconds)))


def run_suite(engine: str = "sqlite", data: Data | None = None, parallel: int = 4,
              cases: list[Case] | None = None, db_url: str | None = None) -> Report:
    """Start both systems, write the data to both, run every case over the tester's window
    (ending END_BEFORE before the data's end); the systems are stopped after."""
    cases = cases if cases is not None else load_cases()
    data = data or Data.make()
    end_nanos = int((data.now - END_BEFORE) * 1e9)
    start, end = go_seconds(end_nanos - WINDOW * 10**9), go_seconds(end_nanos)
    report = Report([])
    with tempfile.TemporaryDirectory(prefix="mi-compliance-") as tmp, \
            systems_under_test(Path(tmp), engine, db_url) as (reference, tested):
        started = time.monotonic()
        with ThreadPoolExecutor(2) as pool:
            for done in [pool.submit(load, "prometheus", reference.url, data.bodies),
                         pool.submit(load, "metrics-ingest", tested.url, data.bodies)]:
                done.result()
        report.seconds["load"] = time.monotonic() - started

        def one(case: Case) -> Result:
            return compare(case, query_range(reference.url, case, start, end),
                           query_range(tested.url, case, start, end))

        started = time.monotonic()
        with ThreadPoolExecutor(parallel) as pool:
            report.results = list(pool.map(one, cases))
        report.seconds["queries"] = time.monotonic() - started
    return report


def describe(report: Report) -> str:
    lines = []
    for result in report.failures():
        lines += ["-" * 80, f"QUERY: {result.case.query}", f"CAUSE: {cause(result)}",
                  f"  {result.unexpected_failure or result.diff or 'succeeded'}"[:900]]
    lines.append("=" * 80)
    by_cause = Counter(cause(result) for result in report.failures())
    for kind, count in by_cause.most_common():
        templates: dict[str, int] = defaultdict(int)
        for result in report.failures():
            if cause(result) == kind:
                templates[result.case.template] += 1
        lines.append(f"{count:4} {kind}: " + "; ".join(
            f"{template} (x{n})" for template, n in templates.items()))
    lines.append(report.summary())
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--milliseconds", action="store_true",
                        help="scrape timestamps with milliseconds, as a scraping Prometheus "
                             "sends them (metrics-ingest stores whole seconds)")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    started = time.monotonic()
    data = Data.make(milliseconds=args.milliseconds)
    print(f"{len(data.bodies)} remote_write bodies of demo data made in "
          f"{time.monotonic() - started:.1f} s", flush=True)
    report = run_suite(args.engine, data)
    print(describe(report))
    print(f"{report.answered} of the cases have a non-empty reference answer; load "
          f"{report.seconds['load']:.1f} s, queries {report.seconds['queries']:.1f} s")
    if not args.no_save:
        RESULTS.parent.mkdir(exist_ok=True)
        with RESULTS.open("a") as out:
            out.write(json.dumps({
                "run": dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ"),
                "git": systems_git(), "engine": args.engine,
                "milliseconds": args.milliseconds, "passed": report.passed,
                "total": len(report.results), "unsupported": report.unsupported,
                "answered": report.answered,
                "failing": [{"query": r.case.query, "cause": cause(r)}
                            for r in report.failures()],
                "seconds": {k: round(v, 1) for k, v in report.seconds.items()}}) + "\n")
    return 0 if report.passed == len(report.results) else 1


def systems_git() -> str:
    from bench.plan import git_sha

    return git_sha()
