"""The page in headless Chromium (Debian's chromium and chromium-driver, never a downloaded
browser): no console errors, one bar per client, a click drills down, Back returns."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
webdriver = pytest.importorskip("selenium.webdriver")

from selenium.common.exceptions import (  # noqa: E402
    NoSuchElementException,
    StaleElementReferenceException,
)
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from tests.conftest import REPO  # noqa: E402
from tests.web_helpers import WebProcess  # noqa: E402

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SCREENSHOT = os.environ.get("TRAFFIC_WEB_SCREENSHOT")  # a path: also save a screenshot there
pytestmark = pytest.mark.browser


def browser(language: str = "en-US") -> webdriver.Chrome:
    if not (shutil.which(CHROMIUM) and shutil.which(DRIVER)):
        pytest.skip("needs Debian's chromium and chromium-driver (installed by .ci/run)")
    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1200,900", f"--lang={language}"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"intl.accept_languages": language})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(DRIVER))


def test_page_bars_drill_down_and_back(tmp_path: Path) -> None:
    web = WebProcess(["--read", str(REPO / "samples" / "sample.pcap"), "--server-ip", "192.0.2.1",
                      "--server-ip", "2001:db8::1", "--out", str(tmp_path / "t.csv"),
                      "--web", "127.0.0.1:0", "--web-history", "999999999"])
    driver = browser()
    try:
        web.wait_for("the dashboard stays at")
        driver.get(web.url)
        wait = WebDriverWait(driver, 30)
        clients = {"192.0.2.2", "192.0.2.3", "2001:db8::2"}

        def bar_clients(_: object) -> set[str]:
            found = {el.get_attribute("data-client") for el in
                     driver.find_elements(By.CSS_SELECTOR, "#chart [data-client]")}
            return found if found == clients else set()

        wait.until(bar_clients)
        # One bar per client: one category each on the x axis, one table row each.
        ticks = driver.find_elements(By.CSS_SELECTOR, "#chart .xtick text")
        assert sorted(t.text for t in ticks) == sorted(clients)
        rows = driver.find_elements(By.CSS_SELECTOR, "#clients tbody tr[data-client]")
        assert {r.get_attribute("data-client") for r in rows} == clients
        wait.until(lambda d: "124,624" in d.find_element(
            By.CSS_SELECTOR, '#clients tr[data-client="192.0.2.2"]').text)
        if SCREENSHOT:
            driver.save_screenshot(SCREENSHOT)

        bar = driver.find_elements(By.CSS_SELECTOR, '#chart [data-client="192.0.2.3"]')
        tallest = max(bar, key=lambda el: el.size["height"])
        ActionChains(driver).move_to_element(tallest).click().perform()
        drill = wait.until(lambda d: d.find_element(By.CSS_SELECTOR,
                                                    '[data-drilldown="192.0.2.3"]'))
        assert drill.is_displayed()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#drill-chart .trace.bars"))
        assert not driver.find_element(By.ID, "overview").is_displayed()
        driver.find_element(By.ID, "back").click()
        wait.until(lambda d: d.find_element(By.ID, "overview").is_displayed())
        assert not driver.find_elements(By.CSS_SELECTOR, "[data-drilldown]")
        # The table's rows drill down too (keyboard users: Enter on a focused row).
        driver.find_element(By.CSS_SELECTOR, '#clients tr[data-client="2001:db8::2"]').click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '[data-drilldown="2001:db8::2"]'))
        driver.find_element(By.ID, "back").click()

        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        driver.quit()
        assert web.stop() == 0


def test_page_in_portuguese_with_brazilian_numbers(tmp_path: Path) -> None:
    web = WebProcess(["--read", str(REPO / "samples" / "sample.pcap"), "--server-ip", "192.0.2.1",
                      "--server-ip", "2001:db8::1", "--out", str(tmp_path / "t.csv"),
                      "--web", "127.0.0.1:0", "--web-history", "999999999"])
    driver = browser("pt-BR")
    try:
        web.wait_for("the dashboard stays at")
        driver.get(web.url)
        wait = WebDriverWait(driver, 30)
        # The table is redrawn as windows and events arrive: wait for the final figure (a row
        # read mid-redraw is stale, not wrong).
        def row_text(d: webdriver.Chrome) -> str:
            try:
                return d.find_element(By.CSS_SELECTOR,
                                      '#clients tr[data-client="192.0.2.2"]').text
            except (NoSuchElementException, StaleElementReferenceException):
                return ""

        wait.until(lambda d: "124.624" in row_text(d))
        assert driver.find_element(By.ID, "back").get_attribute("textContent").strip().endswith(
            "Voltar")
    finally:
        driver.quit()
        assert web.stop() == 0


def test_a_window_closed_again_adds_to_the_page_instead_of_replacing_it(tmp_path: Path) -> None:
    """Late packets give a window a second set of rows (in the CSV, and in the stream as the
    event `start.1`): the page adds them to the window's first rows."""
    from tests.test_web import T0, append, window_rows

    path = tmp_path / "traffic.csv"
    append(path, window_rows(T0, {("10.0.0.1", "in"): [100, 0, 0, 0, 0]})
           + window_rows(T0 + 5, {("10.0.0.1", "out"): [0, 0, 50, 0, 0]}))
    web = WebProcess(["serve", "--csv", str(path), "--web", "127.0.0.1:0"])
    driver = browser()
    try:
        driver.get(web.url)
        wait = WebDriverWait(driver, 30)

        def client_row(d: webdriver.Chrome) -> str:
            try:
                return str(d.find_element(By.CSS_SELECTOR,
                                          '#clients tr[data-client="10.0.0.1"]').text)
            except (NoSuchElementException, StaleElementReferenceException):
                return ""

        wait.until(lambda d: "150" in client_row(d))
        append(path, window_rows(T0, {("10.0.0.1", "in"): [1000, 0, 0, 0, 0]}))  # late rows
        wait.until(lambda d: "1,150" in client_row(d))
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        driver.quit()
        assert web.stop() == 0
