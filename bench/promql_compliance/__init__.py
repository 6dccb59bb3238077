"""The PromQL compliance suite of prometheus/compliance, run in Python against metrics-ingest
with a real Prometheus 2.42 as the reference (run.py; `python -m bench.promql_compliance`)."""
