"""Regenerate the status page's screenshots in docs/ with headless Chromium (Debian's
chromium and chromium-driver, through Selenium), over a throwaway server holding a small,
made-up cluster: four sources (one stale), a source with refused pushes and skipped
samples, two Pushgateway groups.

    .venv/bin/python docs/screenshots.py

Writes docs/status-desktop.png (1280 wide, light), docs/status-phone.png (390 wide, dark)
and docs/status-source.png (a source's page, 1280 wide, light).
"""

from __future__ import annotations

import asyncio
import math
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, web
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from metrics_ingest.app import create_app, server_options
from metrics_ingest.config import Settings
from metrics_ingest.http.status_page import STATUS

DOCS = Path(__file__).resolve().parent
TOKEN = "screenshot-push-token"
ADMIN = "screenshot-admin-token"


class Clock:
    def __init__(self) -> None:
        self.pinned: float | None = None

    def __call__(self) -> float:
        return time.time() if self.pinned is None else self.pinned


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def fill(url: str, clock: Clock, app: web.Application) -> None:
    """An hour of a small cluster: pushes every minute (the clock moved, as if they came
    then), one source gone quiet two hours ago."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    activity = app[STATUS].activity
    now = time.time()
    activity.started = now - 3700  # as if it had served the hour it is filled with
    async with ClientSession(url, headers=auth) as session:
        clock.pinned = now - 7200
        for instance in ("node07", "node08"):
            async with session.put(f"/metrics/job/nightly-backup/instance/{instance}",
                                   data="# TYPE backup_last_success_seconds gauge\n"
                                        f"backup_last_success_seconds {now - 7200:.0f}\n"):
                pass
        for minute in range(60, -1, -1):
            clock.pinned = now - minute * 60
            pending = 40 + 25 * math.sin(minute / 9)
            body = {"source": "hpc-alpha", "labels": {"partition": "gpu"},
                    "metrics": {"slurm_pending_jobs": round(pending),
                                "slurm_running_jobs": 120 - round(pending / 2)}}
            async with session.post("/ingest", json=body):
                pass
            lines = (f"cpu,host=login01 usage_user={30 + 20 * math.cos(minute / 5):.1f}\n"
                     f"mem,host=login01 used_percent={55 + minute / 6:.1f}\n")
            async with session.post("/write?db=login01&precision=s", data=lines):
                pass
            if minute % 5 == 0:
                body = {"source": "cluster-beta", "metrics": {"nodes_up": 62 - minute % 3,
                                                              "state": "degraded"}}
                async with session.post("/ingest", json=body):
                    pass
            activity.note_pushes()
        clock.pinned = None
        for bad in ({"source": "cluster-beta", "metrics": {}},
                    {"source": "cluster-beta", "timestamp": 1, "metrics": {"x": 1}}):
            async with session.post("/ingest", json=bad):
                pass


def shoot(driver: webdriver.Chrome, url: str, width: int, dark: bool, out: Path) -> None:
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [
        {"name": "prefers-color-scheme", "value": "dark" if dark else "light"}]})
    metrics: dict[str, Any] = {"width": width, "height": 900, "deviceScaleFactor": 1,
                               "mobile": width < 600}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    driver.get(url)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {**metrics, "height": height})
    driver.save_screenshot(str(out))
    print(f"{out.relative_to(DOCS.parent)}: {width}x{height}, "  # noqa: T201 - a script
          f"{out.stat().st_size:,} bytes")


def browse(base: str) -> None:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--hide-scrollbars"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options,
                              service=Service(shutil.which("chromedriver") or "chromedriver"))
    try:
        driver.get(base + "/")  # sign in, so the delete buttons show as an admin sees them
        driver.find_element("id", "token").send_keys(ADMIN)
        driver.find_element("css selector", "form.login button").click()
        shoot(driver, base + "/", 1280, False, DOCS / "status-desktop.png")
        shoot(driver, base + "/", 390, True, DOCS / "status-phone.png")
        shoot(driver, base + "/sources/hpc-alpha", 1280, False, DOCS / "status-source.png")
    finally:
        driver.quit()


async def main() -> int:
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        sys.exit("needs Debian's chromium and chromium-driver")
    with tempfile.TemporaryDirectory(prefix="mi-shots-") as tmp:
        clock = Clock()
        settings = Settings(db_path=Path(tmp) / "metrics.db", auth_tokens=(TOKEN,),
                            admin_token=ADMIN, log_level="WARNING")
        app = create_app(settings, clock)
        runner = web.AppRunner(app, **server_options(app))
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        base = f"http://127.0.0.1:{port}"
        try:
            await fill(base, clock, app)
            await asyncio.to_thread(browse, base)
        finally:
            await runner.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
