"""metrics-ingest: a push endpoint for metrics; HTTP in, SQLite inside, Prometheus and JSON out."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("metrics-ingest")
except PackageNotFoundError:  # running from a checkout without installing
    __version__ = "0.0.0+unknown"
