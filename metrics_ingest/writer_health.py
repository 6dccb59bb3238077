"""What the writer knows of the store's health, for /readyz, the status page and pushes:
healthy or not and why, lost for good (the file replaced underneath), and an outage's
failed batches said once (outages.py)."""

from __future__ import annotations

import logging

from metrics_ingest.outages import OutageLog
from metrics_ingest.store import StoreLost

log = logging.getLogger("metrics_ingest.writer")


class WriterHealth:
    """Changed on the event loop only (the writer thread reports through it)."""

    def __init__(self) -> None:
        self.healthy = True
        self.last_error: str | None = None
        self.lost: str | None = None  # the store is gone underneath: refuse, until restart
        self.outage = OutageLog(log, "writer")  # failed batches: the first logged, then counted

    def good(self) -> None:
        """A commit or probe went through: healthy, and an outage's end said."""
        self.healthy = True
        self.last_error = None
        self.outage.working()

    def bad(self, exc: Exception) -> None:
        """The store refused work: unhealthy (/readyz probes) until a probe or batch succeeds;
        a StoreLost is for good."""
        self.healthy = False
        self.last_error = str(exc)
        if isinstance(exc, StoreLost):
            if self.lost is None:
                log.error("%s", exc)
            self.lost = str(exc)
