"""metrics-ingest: a push endpoint for metrics; HTTP in, SQLite or PostgreSQL inside,
Prometheus and JSON out.

A push's way in, one file a step:
1. http/intake.py: the body read within its limits, the format's parser run, the push
   queued and its commit awaited, the answer (every push endpoint; http/ingest.py is the
   route of `POST /ingest`).
2. formats/json_push.py (or influx.py, pushgateway.py, remote_write.py): validation into
   SampleGroups, errors naming the field (model.py holds what they make).
3. inbox.py: the writer's one inbox, bounded by the samples it holds.
4. writer.py: the write side's one owner: batches taken in order, committed, answered.
5. store/sqlite/session.py (or store/postgres/session.py): one batch's transaction, behind
   the Store protocol of store/__init__.py; series ids from store/series_cache.py.
6. store/sqlite/writes.py (store/postgres/rows.py): the SQL that writes the rows.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("metrics-ingest")
except PackageNotFoundError:  # running from a checkout without installing
    __version__ = "0.0.0+unknown"
