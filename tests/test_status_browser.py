"""The status page in a real headless browser (Debian's chromium and chromium-driver, driven
by Selenium): three sources, one stale, all shown with the stale one marked, on a desktop
and a phone-width screen, light and dark; a group deleted through its button leaves
/metrics; with a read token the page asks for it once, then works from the cookie.

The server runs in the test's event loop, so every browser call goes to a thread."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from metrics_ingest.config import Settings
from tests.conftest import AUTH, Clock, required_tool

pytestmark = pytest.mark.slow

Client = TestClient[web.Request, web.Application]
T = TypeVar("T")
ADMIN = "browser-admin-token"
READER = "browser-read-token"
WAIT_SECONDS = 15


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    binary = required_tool("chromium", "chromium")
    driver_path = required_tool("chromedriver", "chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(argument)
    # Both paths given: Selenium Manager never looks anything up on the internet.
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    try:
        yield driver
    finally:
        driver.quit()


async def run(fn: Callable[..., T], *args: Any) -> T:
    """A blocking browser call off the event loop (the server under test runs on it)."""
    return await asyncio.to_thread(functools.partial(fn, *args))


def waited(driver: webdriver.Chrome, condition: Callable[[webdriver.Chrome], Any]) -> Any:
    return WebDriverWait(driver, WAIT_SECONDS).until(condition)


def fresh(driver: webdriver.Chrome, width: int = 1280, dark: bool = False) -> None:
    """No cookie from an earlier test (cookies are per host, not per port), this size and
    colour scheme."""
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    driver.set_window_size(width, 900)
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [
        {"name": "prefers-color-scheme", "value": "dark" if dark else "light"}]})


def rows(driver: webdriver.Chrome) -> list[tuple[str, str, str]]:
    """(source, class, text) of every source row, in page order."""
    return [(row.get_attribute("data-source") or "", row.get_attribute("class") or "",
             row.text) for row in driver.find_elements(By.CSS_SELECTOR, "tr[data-source]")]


def look(driver: webdriver.Chrome, url: str) -> dict[str, Any]:
    driver.get(url)
    return {
        "rows": rows(driver),
        "summary": driver.find_element(By.ID, "summary").text,
        "background": driver.execute_script(
            "return getComputedStyle(document.body).backgroundColor"),
        "row": driver.execute_script(
            "return getComputedStyle(document.querySelector('tr[data-source]')).display"),
        "overflow": driver.execute_script(
            "return document.documentElement.scrollWidth - window.innerWidth"),
    }


async def three_sources(client: Client, clock: Clock) -> None:
    clock.pinned = time.time() - 1800  # 30 min ago: past the 5 min floor
    response = await client.post("/ingest", json={"source": "old-cluster", "metrics": {"up": 1}},
                                 headers=AUTH)
    assert response.status == 200
    clock.pinned = None
    for source in ("alpha", "beta"):
        response = await client.post("/ingest", json={"source": source, "metrics": {"up": 1}},
                                     headers=AUTH)
        assert response.status == 200


async def test_three_sources_one_stale_on_desktop_and_phone_light_and_dark(
        make_client: Callable[[Settings], Any], sqlite_settings: Settings, clock: Clock,
        browser: webdriver.Chrome) -> None:
    client = await make_client(sqlite_settings)
    await three_sources(client, clock)
    url = str(client.make_url("/"))
    await run(fresh, browser)
    desktop = await run(look, browser, url)
    assert [(name, kind) for name, kind, _ in desktop["rows"]] == [
        ("old-cluster", "stale"), ("alpha", "ok"), ("beta", "ok")]
    assert "STALE" in desktop["rows"][0][2]
    assert "30 min ago" in desktop["rows"][0][2]
    assert all("ok" in text for _, _, text in desktop["rows"][1:])
    assert desktop["summary"] == "⚠ 1 of 3 sources stale"
    assert desktop["row"] == "table-row"
    assert desktop["overflow"] <= 0

    await run(fresh, browser, 390, True)
    phone = await run(look, browser, url)
    assert [row[:2] for row in phone["rows"]] == [row[:2] for row in desktop["rows"]]
    assert "STALE" in phone["rows"][0][2]  # said in words, not only in colour
    assert phone["row"] == "block"  # rows become cards
    assert phone["overflow"] <= 0, "the page scrolls sideways on a phone"
    assert phone["background"] != desktop["background"]  # dark

    await run(fresh, browser)
    await run(browser.get, str(client.make_url("/sources/alpha")))
    family = await run(browser.find_element, By.CSS_SELECTOR, 'tr[data-family="up"]')
    assert "1" in family.text
    assert family.find_elements(By.CSS_SELECTOR, "svg.spark, circle")


async def test_a_group_deleted_through_its_button_leaves_metrics(
        make_client: Callable[[Settings], Any], sqlite_settings: Settings,
        browser: webdriver.Chrome) -> None:
    client = await make_client(sqlite_settings.replace(admin_token=ADMIN))
    for instance in ("node07", "node08"):
        response = await client.put(f"/metrics/job/nightly/instance/{instance}",
                                    data="# TYPE backup_ok gauge\nbackup_ok 1\n", headers=AUTH)
        assert response.status == 200
    assert (await (await client.get("/metrics")).text()).count("backup_ok{") == 2

    def sign_in_and_delete(url: str) -> list[str]:
        fresh(browser)
        browser.get(url)
        browser.find_element(By.ID, "token").send_keys(ADMIN)
        browser.find_element(By.CSS_SELECTOR, "form.login button").click()
        waited(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "header form"))  # signed in
        row = browser.find_element(By.CSS_SELECTOR,
                                   'tr[data-job="nightly"][data-grouping*="node07"]')
        row.find_element(By.CSS_SELECTOR, "button.danger").click()
        alert = waited(browser, lambda d: d.switch_to.alert)
        question = alert.text
        alert.accept()
        waited(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "tr[data-job]")) == 1)
        return [question, browser.current_url]

    question, landed = await run(sign_in_and_delete, str(client.make_url("/")))
    assert question.startswith("Delete the group job=nightly, instance=node07?")
    assert landed.endswith("/#groups")
    assert ADMIN not in landed
    exposition = await (await client.get("/metrics")).text()
    assert 'instance="node08"' in exposition
    assert 'instance="node07"' not in exposition


async def test_with_a_read_token_the_page_asks_for_it_then_works(
        make_client: Callable[[Settings], Any], sqlite_settings: Settings, clock: Clock,
        browser: webdriver.Chrome) -> None:
    client = await make_client(sqlite_settings.replace(read_token=READER))
    await three_sources(client, clock)

    def sign_in(url: str) -> dict[str, Any]:
        fresh(browser)
        browser.get(url)
        asked = bool(browser.find_elements(By.CSS_SELECTOR, 'input[type="password"]'))
        before = browser.find_elements(By.CSS_SELECTOR, "tr[data-family]")
        browser.find_element(By.ID, "token").send_keys(READER)
        browser.find_element(By.CSS_SELECTOR, "form.login button").click()
        waited(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "tr[data-family]"))
        after = [row.get_attribute("data-family")
                 for row in browser.find_elements(By.CSS_SELECTOR, "tr[data-family]")]
        at = browser.current_url
        browser.get(url.replace("/sources/alpha", "/"))  # another page: not asked again
        again = rows(browser)
        return {"asked": asked, "before": before, "after": after, "url": at, "again": again,
                "cookies": browser.get_cookies(),
                "script_sees": browser.execute_script("return document.cookie")}

    seen = await run(sign_in, str(client.make_url("/sources/alpha")))
    assert seen["asked"]
    assert seen["before"] == []
    assert seen["after"] == ["up"]  # alpha's page: back where it was asked
    assert seen["url"].endswith("/sources/alpha")
    assert READER not in seen["url"]
    assert [name for name, _, _ in seen["again"]] == ["old-cluster", "alpha", "beta"]
    (cookie,) = seen["cookies"]
    assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"]) == (
        "metrics_ingest_token", True, "Strict")
    assert "expiry" not in cookie  # for the browser session only
    assert seen["script_sees"] == ""
