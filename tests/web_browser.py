"""What the page's tests share: Debian's chromium, headless, driven through chromedriver
(never a downloaded browser), and the page's range and resolution as a user sees them. A test
using it carries the `browser` marker."""

from __future__ import annotations

import atexit

from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.requirements import tool

# Idle browsers of this process by language: a Chromium's start and its first parse of the
# page's scripts cost seconds of CPU each time, half the browser tests' time when every test
# started its own. The page keeps nothing in the browser (no cookies, no storage).
_IDLE: dict[str, webdriver.Chrome] = {}
_LANGUAGE: dict[int, str] = {}


def browser(language: str = "en-US") -> webdriver.Chrome:
    """A headless Chromium in `language`, an idle one of an earlier test if there is one;
    the test gives it back with release()."""
    driver = _IDLE.pop(language, None)
    if driver is None:
        driver = _start(language)
        _LANGUAGE[id(driver)] = language
    return driver


def release(driver: webdriver.Chrome) -> None:
    """A test's browser back, on a blank page at the window's own size, its console read (the
    next test sees only its own messages); one that does not answer is closed."""
    language = _LANGUAGE.get(id(driver), "")
    try:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        driver.get("about:blank")
        driver.get_log("browser")
    except WebDriverException:
        language = ""
    if not language or language in _IDLE:
        _LANGUAGE.pop(id(driver), None)
        driver.quit()
    else:
        _IDLE[language] = driver


@atexit.register
def _quit_idle() -> None:
    while _IDLE:
        _IDLE.popitem()[1].quit()


def _start(language: str) -> webdriver.Chrome:
    chromium, driver = tool("chromium"), tool("chromedriver")
    options = Options()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1200,900", f"--lang={language}"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"intl.accept_languages": language})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(driver))


def narrow(driver: webdriver.Chrome, width: int) -> None:
    """The viewport at `width` CSS pixels (a headless window is never narrower than 500)."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": 900, "deviceScaleFactor": 1,
                            "mobile": False})


def pick_span(driver: webdriver.Chrome, value: str) -> None:
    Select(driver.find_element(By.ID, "span")).select_by_value(value)


def shown_resolution(driver: webdriver.Chrome, element: str = "resolution") -> str:
    try:
        return driver.find_element(By.ID, element).get_attribute("data-resolution") or ""
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def console_errors(driver: webdriver.Chrome) -> list[dict]:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
