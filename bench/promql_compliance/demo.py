"""Data shaped like the suite's: three instances of the PromLabs demo service
(juliusv/prometheus_demo_service: its metric families, label sets and dynamics) scraped every
5 s as the suite's prometheus-test-data.yml scrapes them, with the series Prometheus adds per
target (`up`, `scrape_*`) and the staleness markers it writes when a series leaves a scrape,
as the remote_write requests such a Prometheus would send.

One deviation from the suite's scrape config: every target carries `source="demo"`, because
every series metrics-ingest stores has a source label (the one a remote_write series' `source`
label sets); the reference holds the same label, so no result label is dropped before comparing.
Timestamps are whole seconds (metrics-ingest stores seconds) unless `milliseconds` is set."""

from __future__ import annotations

import math
import random
import struct
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass, field

from bench.encode import snappy
from metrics_ingest.formats.remote_write import WRITE_REQUEST

INSTANCES = ("demo.promlabs.com:10000", "demo.promlabs.com:10001", "demo.promlabs.com:10002")
TARGET_LABELS = {"job": "demo", "source": "demo"}
INTERVAL = 5.0  # seconds, the suite's scrape_interval
STALE_NAN = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]
GIB = 1024 * 1024 * 1024
MIB = 1024 * 1024
# prometheus.ExponentialBuckets(0.0001, 1.5, 25), computed as Go computes it.
BUCKETS: list[float] = []
_bound = 0.0001
for _ in range(25):
    BUCKETS.append(_bound)
    _bound *= 1.5
# The `le` labels as client_golang writes them (FormatFloat 'g', -1: Python's repr for these).
LE = [*(repr(bound) for bound in BUCKETS), "+Inf"]
# (method, path): (base latency s, error ratio, outage duration s, pause between requests s)
ENDPOINTS = {
    ("GET", "/api/foo"): (0.010, 0.005, 23.0, 0.010),
    ("POST", "/api/foo"): (0.020, 0.02, 60.0, 0.150),
    ("GET", "/api/bar"): (0.015, 0.0025, 13.0, 0.020),
    ("POST", "/api/bar"): (0.050, 0.01, 47.0, 0.100),
    ("GET", "/api/nonexistent"): (0.0, 0.0, 1.0, 0.500),
}
Key = tuple[str, tuple[tuple[str, str], ...]]  # (metric name, other labels sorted)


@dataclass
class Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(BUCKETS, value)] += 1
        self.total += value


class DemoService:
    """One demo service process started at `start` (s), advanced scrape by scrape."""

    def __init__(self, start: float, seed: int) -> None:
        self.rng = random.Random(seed)
        self.start = start
        self.now = start
        self.cpu = {"user": 0.0, "system": 0.0, "idle": 0.0}
        self.memory = {"used": 1200 * MIB, "cached": 2500 * MIB, "buffers": 165 * MIB}
        self.disk = int(0.1 * 160e9)
        self.shipped = 0
        self.next_ship = start
        self.holiday = 0.0
        self.next_holiday = start
        self.batch = dict.fromkeys(("last_success_timestamp_seconds", "last_run_timestamp_seconds",
                                    "last_run_duration_seconds", "last_run_processed_bytes"), 0.0)
        self.last_batch = start
        self.next_batch = start + 11
        self.histograms: dict[tuple[str, str, str], Histogram] = {}
        self.next_request = dict.fromkeys(ENDPOINTS, start)
        self.handler_requests = 0

    def advance(self, until: float) -> None:
        rng = self.rng
        ticks = int((until - self.now) / 0.1)
        for _ in range(ticks):  # runCPUSim and runMemorySim: every 100 ms
            user = (0.3 + (rng.random() - 0.5) / 5) * 0.4
            system = (0.2 + (rng.random() - 0.5) / 5) * 0.4
            self.cpu["user"] += user
            self.cpu["system"] += system
            self.cpu["idle"] += 0.4 - user - system
            for kind, base in (("used", 1200 * MIB), ("cached", 2500 * MIB),
                               ("buffers", 165 * MIB)):
                current = self.memory[kind] + int((rng.random() - 0.5) * 60 * MIB)
                if abs(current - base) > base * 0.5:
                    current = base
                self.memory[kind] = current
        for _ in range(int(until) - int(self.now)):  # runDiskSim: every second
            self.disk += int(0.5e6 * (1 - (rng.random() - 0.5)))
            if self.disk > 0.9 * 160e9:
                self.disk = int(0.1 * 160e9)
        while self.next_holiday <= until:  # runHolidaySim: a "day" is 5 minutes
            self.holiday = 0.0 if rng.random() > 0.2 else 1.0
            self.next_holiday += 300
        while self.next_ship <= until:
            self.shipped += 1
            factor = 2 + math.sin(1 + 2 * math.pi * (self.next_ship - self.start) / 300)
            self.next_ship += 0.1 * factor * (1.8 if self.holiday else 1.0)
        while self.next_batch <= until:  # runBatchJobs: every minute, 10 s long
            stamp = self.next_batch - rng.randrange(2000) / 1e6
            if rng.random() > 0.25:
                self.batch["last_success_timestamp_seconds"] = stamp
                self.batch["last_run_processed_bytes"] = float(1_100_000 - rng.randrange(100_000))
            self.batch["last_run_timestamp_seconds"] = stamp
            self.batch["last_run_duration_seconds"] = stamp - self.last_batch
            self.last_batch = stamp
            self.next_batch += 60
        self.requests(until)
        self.now = until

    def requests(self, until: float) -> None:
        """startClient's five loops against handleAPI, each request observed."""
        rng = self.rng
        for (method, path), (base, errors, outage, pause) in ENDPOINTS.items():
            at = self.next_request[(method, path)]
            while at <= until:
                since = at - self.start
                oscillation = 2 + math.sin(math.sin(2 * math.pi * since / 3600))
                if path == "/api/nonexistent":
                    status, latency = "404", 0.00003 + rng.random() * 0.00004
                else:
                    factor = 3.0 if since % (10 * outage) < outage else 1.0
                    latency = max(0.0, base + rng.gauss(0, base / 10)) * factor
                    failed = rng.random() <= errors * (10 if factor > 1 else 1)
                    status = "500" if failed else "200"
                key = (method, path, status)
                histogram = self.histograms.get(key)
                if histogram is None:
                    histogram = self.histograms[key] = Histogram()
                histogram.observe(latency + 0.0002 * rng.random())
                at += latency + pause * oscillation
            self.next_request[(method, path)] = at

    def exposition(self) -> dict[Key, float]:
        """What GET /metrics shows now (the demo's families and a few of client_golang's)."""
        out: dict[Key, float] = {}

        def put(name: str, value: float, **labels: str) -> None:
            out[(name, tuple(sorted(labels.items())))] = value

        put("demo_num_cpus", 4.0)
        for mode, seconds in self.cpu.items():
            put("demo_cpu_usage_seconds_total", seconds, mode=mode)
        put("demo_disk_usage_bytes", float(self.disk))
        put("demo_disk_total_bytes", 160e9)
        used = sum(self.memory.values())
        for kind, used_bytes in self.memory.items():
            put("demo_memory_usage_bytes", float(used_bytes), type=kind)
        put("demo_memory_usage_bytes", float(8 * GIB - used), type="free")
        put("demo_is_holiday", self.holiday)
        put("demo_items_shipped_total", float(self.shipped))
        for name, value in self.batch.items():
            put(f"demo_batch_{name}", value)
        put("demo_api_http_requests_in_progress", float(self.rng.randrange(0, 4)))
        for (method, path, status), histogram in self.histograms.items():
            labels = {"method": method, "path": path, "status": status}
            running = 0
            for le, count in zip(LE, histogram.counts, strict=True):
                running += count
                put("demo_api_request_duration_seconds_bucket", float(running), le=le, **labels)
            put("demo_api_request_duration_seconds_sum", histogram.total, **labels)
            put("demo_api_request_duration_seconds_count", float(running), **labels)
        if int(self.now // 60) % 2 == 0:  # intermittentMetric: even minutes only
            put("demo_intermittent_metric", 1.0)
        self.handler_requests += 1
        put("promhttp_metric_handler_requests_total", float(self.handler_requests), code="200")
        put("go_goroutines", float(8 + self.rng.randrange(4)))
        put("process_cpu_seconds_total", round(sum(self.cpu.values()) / 40, 2))
        return out


@dataclass
class Scrape:
    """One scrape of one target as Prometheus appends it: time (ms) and samples."""

    millis: int
    samples: dict[Key, float]


def scrapes(instance: str, number: int, begin: int, end: int, milliseconds: bool
            ) -> Iterator[Scrape]:
    """Every scrape of one target in [begin, end) (s), with the series Prometheus adds and a
    staleness marker for each series the previous scrape had and this one has not."""
    offset = (0.0, 1.0, 3.0)[number] if not milliseconds else (0.412, 1.877, 3.263)[number]
    jitter = random.Random(1000 + number)
    service = DemoService(begin - 30.0, seed=number)
    previous: set[Key] = set()
    seen: set[Key] = set()
    keys: dict[Key, Key] = {}  # a series' exposed key -> its key with the target's labels
    at = begin + offset
    while at < end:
        moment = at + (jitter.uniform(-0.002, 0.002) if milliseconds else 0.0)
        millis = round(moment * 1000)
        service.advance(millis / 1000)
        exposed = service.exposition()
        added = len(exposed.keys() - seen)
        seen |= exposed.keys()
        samples: dict[Key, float] = {}
        base = (("instance", instance), *sorted(TARGET_LABELS.items()))
        for key, value in exposed.items():
            full = keys.get(key)
            if full is None:
                full = keys[key] = (key[0], tuple(sorted((*key[1], *base))))
            samples[full] = value
        for name, value in (("up", 1.0),
                            ("scrape_duration_seconds", 0.002 + jitter.random() * 0.004),
                            ("scrape_samples_scraped", float(len(exposed))),
                            ("scrape_samples_post_metric_relabeling", float(len(exposed))),
                            ("scrape_series_added", float(added))):
            samples[(name, tuple(sorted(base)))] = value
        for gone in previous - samples.keys():
            samples[gone] = STALE_NAN
        previous = {key for key, value in samples.items() if not math.isnan(value)}
        yield Scrape(millis, samples)
        at += INTERVAL


def write_bodies(begin: int, end: int, milliseconds: bool = False, per_request: int = 12
                 ) -> Iterator[bytes]:
    """The remote_write bodies (snappy WriteRequests) of every target's scrapes, in time
    order: each holds `per_request` consecutive scrapes of one target."""
    streams = [scrapes(instance, number, begin, end, milliseconds)
               for number, instance in enumerate(INSTANCES)]
    while streams:
        for stream in list(streams):
            chunk = [scrape for _, scrape in zip(range(per_request), stream, strict=False)]
            if not chunk:
                streams.remove(stream)
                continue
            series: dict[Key, list[tuple[float, int]]] = {}
            for scrape in chunk:
                for key, value in scrape.samples.items():
                    series.setdefault(key, []).append((value, scrape.millis))
            request = WRITE_REQUEST()
            for (name, labels), points in series.items():
                entry = request.timeseries.add()
                for label, text in sorted((("__name__", name), *labels)):
                    entry.labels.add(name=label, value=text)
                for value, millis in points:
                    entry.samples.add(value=value, timestamp=millis)
            yield snappy(request.SerializeToString())
