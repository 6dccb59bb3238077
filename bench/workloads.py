"""Python equivalents of bench/wrk/*.lua, for the fallback generator when wrk is missing."""

from __future__ import annotations

from collections.abc import Callable

import orjson

from bench.loadgen import HttpRequest


def ingest_small(args: list[str]) -> Callable[[int], HttpRequest]:
    token, base = args[0], int(args[1])
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def build(n: int) -> HttpRequest:
        body = orjson.dumps({"source": "hpc", "timestamp": base + n + 1, "metrics": {
            "slurm_pending_jobs": (n + 1) % 500, "slurm_running_jobs": (n + 1) % 100}})
        return HttpRequest("POST", "/ingest", headers, body)

    return build


def ingest_bulk(args: list[str]) -> Callable[[int], HttpRequest]:
    token, base = args[0], int(args[1])
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def build(n: int) -> HttpRequest:
        body = orjson.dumps([
            {"source": "bulk", "labels": {"host": f"h{host}"}, "timestamp": base + n + 1,
             "metrics": {f"bulk_metric_{m}": m * host + 0.5 for m in range(1, 101)}}
            for host in range(1, 11)])
        return HttpRequest("POST", "/ingest", headers, body)

    return build


def pgw_small(args: list[str]) -> Callable[[int], HttpRequest]:
    job = args[0] if args else "hpc"

    def build(n: int) -> HttpRequest:
        body = f"slurm_pending_jobs {(n + 1) % 500}\nslurm_running_jobs {(n + 1) % 100}\n"
        return HttpRequest("PUT", f"/metrics/job/{job}", {}, body.encode())

    return build


def pgw_bulk(args: list[str]) -> Callable[[int], HttpRequest]:
    body = "".join(f'bulk_metric_{m}{{host="h{host}"}} {m * host}.5\n'
                   for host in range(1, 11) for m in range(1, 101)).encode()

    def build(n: int) -> HttpRequest:
        return HttpRequest("PUT", "/metrics/job/bulk", {}, body)

    return build


def vm_bulk(args: list[str]) -> Callable[[int], HttpRequest]:
    base = int(args[0])

    def build(n: int) -> HttpRequest:
        ts = (base + n + 1) * 1000
        body = "".join(f'bulk_metric_{m}{{host="h{host}",source="bulk"}} {m * host}.5 {ts}\n'
                       for host in range(1, 11) for m in range(1, 101)).encode()
        return HttpRequest("POST", "/api/v1/import/prometheus", {}, body)

    return build


BUILDERS = {"ingest_small.lua": ingest_small, "ingest_bulk.lua": ingest_bulk,
            "pgw_small.lua": pgw_small, "pgw_bulk.lua": pgw_bulk, "vm_bulk.lua": vm_bulk}


def python_builder(script: str, args: list[str]) -> Callable[[int], HttpRequest]:
    return BUILDERS[script](args)
