"""An outage said once and its end once: a task that fails on every attempt while the
database is down (each batch, each scrape, each sweep) logs its first failure, counts the
rest, and says when it works again and how many failures it held back."""

from __future__ import annotations

import logging


class OutageLog:
    """`failed` logs the first failure of an outage at `level` and counts the others;
    `working` ends the outage with one info line. Used on one thread (the event loop)."""

    def __init__(self, log: logging.Logger, what: str, level: int = logging.ERROR) -> None:
        self.log = log
        self.what = what
        self.level = level
        self.failures = 0

    def failed(self, message: str, *args: object) -> None:
        """A failure; logged only when it starts an outage (`message % args`, after `what`)."""
        self.failures += 1
        if self.failures == 1:
            self.log.log(self.level, f"{self.what}: {message} (said once until it works "
                         "again)", *args)

    def working(self) -> None:
        """A success; ends an outage with one line saying how many failures it had."""
        if self.failures:
            count, self.failures = self.failures, 0
            self.log.info("%s: working again after %d failure%s", self.what, count,
                          "" if count == 1 else "s")
