# metrics-ingest: slim Python, non-root, data on a volume.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY metrics_ingest ./metrics_ingest
COPY sql ./sql
# A wheel install: the sql/ migrations travel inside the package (metrics_ingest/sql).
RUN pip install '.[fast]' && rm -rf /src

RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin metrics \
    && mkdir -p /data && chown metrics:metrics /data
USER metrics
WORKDIR /data
VOLUME ["/data"]

ENV METRICS_HOST=0.0.0.0 \
    METRICS_PORT=8787 \
    METRICS_DB_PATH=/data/metrics.db
EXPOSE 8787

HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8787/healthz', timeout=2)"]

# SIGTERM: intake stops, the queue is committed, the database closed, exit 0 within 10 s
# (compose gives it 30 s before SIGKILL: stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["metrics-ingest"]
CMD ["serve"]
