"""The storage ceiling: stdlib sqlite3 `executemany` into the service's own schema, with the
writer's PRAGMAs and statements, rows prepared in advance (no HTTP, no JSON, no validation)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from metrics_ingest.store.sqlite import migrations, sql


def raw_insert_rate(db_path: Path, total_rows: int, batch_rows: int = 10_000,
                    series: int = 1000, with_latest: bool = True) -> dict[str, float]:
    """Rows per second committing `batch_rows`-row transactions of the W3 shape (1,000 series,
    a new timestamp per 1,000 rows). `with_latest` adds the writer's `latest` upsert."""
    migrations.migrate(db_path)
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA cache_size=-65536")
    conn.execute("BEGIN")
    conn.executemany(sql.INSERT_SERIES,
                     [(i, f"bulk_metric_{i % 100}", "bulk", f'{{"host":"h{i // 100}"}}', "")
                      for i in range(1, series + 1)])
    conn.execute("COMMIT")
    base = int(time.time()) - 86400
    batches = []
    ts = base
    for _ in range(max(1, total_rows // batch_rows)):
        rows = []
        while len(rows) < batch_rows:
            rows.extend((ts, sid, sid * 1.5) for sid in range(1, series + 1))
            ts += 1
        newest = {sid: (sid, t, v) for t, sid, v in rows}
        batches.append((rows, list(newest.values())))
    elapsed = 0.0
    written = 0
    for rows, newest in batches:
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql.UPSERT_SAMPLE, rows)
        if with_latest:
            conn.executemany(sql.UPSERT_LATEST, newest)
        conn.execute("COMMIT")
        elapsed += time.perf_counter() - started
        written += len(rows)
    conn.close()
    return {"rows": written, "rows_per_s": written / elapsed}
