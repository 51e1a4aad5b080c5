"""What the page's tests share: Debian's chromium, headless, driven through chromedriver
(never a downloaded browser), and the page's range and resolution as a user sees them. A test
using it carries the `browser` marker."""

from __future__ import annotations

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.requirements import tool


def browser(language: str = "en-US") -> webdriver.Chrome:
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
