"""The page in headless Chromium (Debian's chromium and chromium-driver, never a downloaded
browser): no console errors, one bar per client, a click drills down, Back returns."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
webdriver = pytest.importorskip("selenium.webdriver")

from selenium.common.exceptions import (  # noqa: E402
    NoSuchElementException,
    StaleElementReferenceException,
)
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from tests.conftest import REPO  # noqa: E402
from tests.web_browser import browser, pick_span, release, shown_resolution  # noqa: E402
from tests.web_helpers import T0, WebProcess, append, window_rows  # noqa: E402

SCREENSHOT = os.environ.get("TRAFFIC_WEB_SCREENSHOT")  # a path: also save a screenshot there
pytestmark = pytest.mark.browser


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
        release(driver)
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
        release(driver)
        assert web.stop() == 0


def test_a_window_closed_again_adds_to_the_page_instead_of_replacing_it(tmp_path: Path) -> None:
    """Late packets give a window a second set of rows (in the CSV, and in the stream as the
    event `start.1`): the page adds them to the window's first rows."""
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
        release(driver)
        assert web.stop() == 0


# Issue 16 (5): what a new user hit on the page. One daemon on the sample for these tests.
CLASS_NAMES = ("HTTP", "FTP", "TCP", "UDP", "Other")


@pytest.fixture(scope="session")
def sample_web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebProcess]:
    out = tmp_path_factory.mktemp("page") / "t.csv"
    web = WebProcess(["--read", str(REPO / "samples" / "sample.pcap"), "--server-ip", "192.0.2.1",
                      "--server-ip", "2001:db8::1", "--out", str(out),
                      "--web", "127.0.0.1:0", "--web-history", "999999999"])
    try:
        web.wait_for("the dashboard stays at")
        yield web
    finally:
        assert web.stop() == 0


def open_page(web: WebProcess, width: int | None = None,
              language: str = "en-US") -> webdriver.Chrome:
    """The page with its three clients' bars drawn; `width`: the viewport's CSS pixels (a
    headless window is never narrower than 500)."""
    driver = browser(language)
    if width is not None:
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": width, "height": 900, "deviceScaleFactor": 1,
                                "mobile": False})
    driver.get(web.url)
    WebDriverWait(driver, 30).until(lambda d: len({
        el.get_attribute("data-client")
        for el in d.find_elements(By.CSS_SELECTOR, "#chart [data-client]")}) == 3)
    return driver


# What a bar segment or a legend swatch is painted with: a colour and an opacity, or a
# pattern's background and stripes (its size aside: the legend draws it smaller).
PAINT = """
const paint = (el) => {
  const style = getComputedStyle(el);
  const opacity = `${style.opacity}/${style.fillOpacity}`;
  const id = (style.fill.match(/url\\("?#([^")]+)"?\\)/) || [])[1];
  if (!id) return `${style.fill} ${opacity}`;
  const pattern = document.getElementById(id);
  const stripes = [...pattern.querySelectorAll('path')].map((p) => p.getAttribute('stroke'));
  return `pattern ${pattern.querySelector('rect').getAttribute('fill')} ${stripes} ${opacity}`;
};
"""


def painted(driver: webdriver.Chrome, chart: str) -> tuple[dict[str, str], dict[str, set[str]]]:
    """Legend name -> its swatch's paint, and -> the paints of that trace's bar segments."""
    legend, bars = driver.execute_script(PAINT + """
        const gd = document.querySelector(arguments[0]);
        const legend = {}, bars = {};
        gd.querySelectorAll('.legend .traces').forEach((item) => {
          legend[item.querySelector('.legendtext').textContent] =
            paint(item.querySelector('.legendpoints path'));
        });
        gd.querySelectorAll('.trace.bars').forEach((trace, i) => {
          bars[gd._fullData[i].name] =
            [...trace.querySelectorAll('.point path')].map(paint);
        });
        return [legend, bars];""", chart)
    return legend, {name: set(paints) for name, paints in bars.items()}


def test_in_and_out_look_different_in_the_legend_and_the_bars(sample_web: WebProcess) -> None:
    """Each class's "in" and "out" swatches were painted alike (the bars' opacity does not reach
    the legend): out is hatched over a lighter shade, in the legend and on the bars alike."""
    driver = open_page(sample_web)
    try:
        legend, bars = painted(driver, "#chart")
        assert set(legend) == {f"{c} {d}" for c in CLASS_NAMES for d in ("in", "out")}
        for name in CLASS_NAMES:
            assert legend[f"{name} in"] != legend[f"{name} out"], name
            assert legend[f"{name} out"].startswith("pattern "), legend[f"{name} out"]
        assert set(bars) == set(legend)
        for name, paints in bars.items():
            assert paints == {legend[name]}, (name, paints, legend[name])
    finally:
        release(driver)


def _rect(driver: webdriver.Chrome, element: Any) -> dict[str, float]:
    return driver.execute_script("const r = arguments[0].getBoundingClientRect(); "
                                 "return {left: r.left, right: r.right, top: r.top, "
                                 "bottom: r.bottom};", element)


def _overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return a["left"] < b["right"] and b["left"] < a["right"] and \
        a["top"] < b["bottom"] and b["top"] < a["bottom"]


@pytest.mark.parametrize("width", [420, 1200])
def test_a_narrow_page_does_not_scroll_sideways_and_the_legend_clears_the_bars(
        sample_web: WebProcess, width: int) -> None:
    """At 420 px the legend's rows covered the bars and the table pushed the page sideways."""
    driver = open_page(sample_web, width)
    try:
        assert driver.execute_script("return window.innerWidth") == width
        assert driver.execute_script(
            "return document.documentElement.scrollWidth") <= width
        plot_area = _rect(driver, driver.find_element(By.CSS_SELECTOR, "#chart .nsewdrag"))
        legend = _rect(driver, driver.find_element(By.CSS_SELECTOR, "#chart .legend"))
        assert not _overlap(legend, plot_area), (legend, plot_area)
        for bar in driver.find_elements(By.CSS_SELECTOR, "#chart .trace.bars .point"):
            assert not _overlap(legend, _rect(driver, bar))
        # The table is all there: it scrolls in its own box, not the page.
        table = driver.find_element(By.ID, "clients")
        assert "Other" in table.get_attribute("textContent")
    finally:
        release(driver)


@pytest.mark.parametrize("language", ["en-US", "pt-BR"])
def test_table_headers_carry_the_unit(sample_web: WebProcess, language: str) -> None:
    driver = open_page(sample_web, language=language)
    try:
        shown = [th.text for th in driver.find_elements(By.CSS_SELECTOR, "#clients th")]
        drill_into(driver, "192.0.2.2")
        shown += [th.text for th in driver.find_elements(By.CSS_SELECTOR, "#services th")]
        assert len(shown) == 9 + 4
        # As drawn: each figure's column names its unit; the client's and the service's not.
        assert ["bytes" in text.split() for text in shown] == \
            [False] + [True] * 8 + [False] + [True] * 3, shown
    finally:
        release(driver)


def drill_into(driver: webdriver.Chrome, ip: str) -> Any:
    driver.find_element(By.CSS_SELECTOR, f'#clients tr[data-client="{ip}"]').click()
    wait = WebDriverWait(driver, 30)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#drill-chart .trace.bars"))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#services tbody td"))
    return driver.find_element(By.ID, "drill")


@pytest.mark.parametrize(("language", "chart_says", "table_says", "note_says"), [
    ("en-US", "(the CSV's classes)", "by the server's port", "FTP's data connections"),
    ("pt-BR", "(as classes do CSV)", "pela porta do servidor", "conexões de dados do FTP"),
])
def test_the_drill_down_says_what_its_chart_and_its_table_count(
        sample_web: WebProcess, language: str, chart_says: str, table_says: str,
        note_says: str) -> None:
    """192.0.2.2's chart showed about 100 kB of FTP and its services table 3,630 bytes of ftp:
    passive FTP's data goes to other ports, FTP by class (the CSV's), tcp/other by port. Each
    says what it counts, and a note says why they differ when the client has FTP."""
    driver = open_page(sample_web, language=language)
    try:
        drill = drill_into(driver, "192.0.2.2")
        chart_title = driver.find_element(By.ID, "drill-chart-title")
        table_title = driver.find_element(By.ID, "services-title")
        note = driver.find_element(By.ID, "ftp-note")
        assert chart_says in chart_title.text and table_says in table_title.text
        assert note.is_displayed() and note_says in note.text and "tcp/other" in note.text
        assert "FTP" in {t.text.split()[0] for t in
                         drill.find_elements(By.CSS_SELECTOR, "#drill-chart .legendtext")}
        services = {row.find_elements(By.TAG_NAME, "td")[0].text
                    for row in drill.find_elements(By.CSS_SELECTOR, "#services tbody tr")}
        assert {"ftp", "tcp/other"} <= services
        driver.find_element(By.ID, "back").click()
        drill_into(driver, "2001:db8::2")  # no FTP: nothing to explain
        assert not driver.find_element(By.ID, "ftp-note").is_displayed()
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        release(driver)


# Issue 17: any range. `serve --history` over a store holding a week, made here with the
# history's own writer.
WEEK = 7 * 86400
MONTH = 30 * 86400  # what the store holds: the "30 generated days"
WEEK_END = 1_700_000_000 // 3600 * 3600
WEEK_CLIENTS = ("198.51.100.1", "198.51.100.2", "2001:db8::9")


@pytest.fixture(scope="session")
def week_web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebProcess]:
    pytest.importorskip("duckdb")
    import numpy as np

    from traffic_capture.history.writer import HistoryWriter

    path = tmp_path_factory.mktemp("week") / "history"
    with HistoryWriter(path, "5s=7d,1m=90d,1h=forever", "test", flush_seconds=0.0) as writer:
        for number, start in enumerate(range(WEEK_END - MONTH, WEEK_END, 600)):
            counts = np.array([[1000 + number, 0, 0, 0, 0], [0, 0, 500, 0, 0],
                               [0, 0, 0, 70, 7]], dtype=np.int64)
            writer.add_window(start, start + 5, list(WEEK_CLIENTS),
                              np.array([True, False, True]), counts)
    web = WebProcess(["serve", "--history", str(path), "--web", "127.0.0.1:0"])
    try:
        yield web
    finally:
        assert web.stop() == 0


@pytest.mark.parametrize(("language", "per_minute"), [("en-US", "per minute"),
                                                       ("pt-BR", "por minuto")])
def test_last_week_over_a_history_at_its_resolution_with_its_drill_down(
        week_web: WebProcess, language: str, per_minute: str) -> None:
    """"last week" is asked of the API (the page's memory holds an hour): the bars and the
    table are the week's, the resolution the answer used is shown (1 minute), and the
    drill-down's chart is drawn at that resolution, a bar per minute holding traffic."""
    from tests.web_helpers import get

    driver = browser(language)
    try:
        driver.get(week_web.url)
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: shown_resolution(d) == "5")  # live: the last 5 minutes
        pick_span(driver, "604800")
        wait.until(lambda d: shown_resolution(d) == "60")
        assert driver.find_element(By.ID, "resolution").text == per_minute
        api = get(week_web.url + "api/clients?seconds=604800&limit=1000")[1]
        assert api["resolution"] == 60
        totals = {c["ip"]: c["total"] for c in api["clients"]}
        assert set(totals) == set(WEEK_CLIENTS)

        def table(d: webdriver.Chrome) -> dict[str, str]:
            try:
                return {row.get_attribute("data-client"): row.text for row in
                        d.find_elements(By.CSS_SELECTOR, "#clients tbody tr[data-client]")}
            except StaleElementReferenceException:
                return {}

        wait.until(lambda d: set(table(d)) == set(WEEK_CLIENTS))
        separator = "." if language == "pt-BR" else ","
        total = f"{totals['198.51.100.1']:,}".replace(",", separator)
        assert total in table(driver)["198.51.100.1"]
        driver.find_element(By.CSS_SELECTOR, '#clients tr[data-client="198.51.100.1"]').click()
        wait.until(lambda d: shown_resolution(d, "drill-resolution") == "60")
        assert per_minute in driver.find_element(By.ID, "drill-chart-title").text
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#drill-chart .trace.bars"))
        drill = get(week_web.url + "api/clients/198.51.100.1?seconds=604800")[1]
        # "The last week" counts back from the newest 5-second window's end; a minute holding
        # traffic is in it when it ends after the week's start.
        week_start = WEEK_END - 600 + 5 - WEEK
        minutes = [s for s in range(WEEK_END - MONTH, WEEK_END, 600) if s + 60 > week_start]
        assert drill["resolution"] == 60 and len(drill["history"]) == len(minutes)
        drawn = driver.execute_script(
            "const gd = document.getElementById('drill-chart');"
            "return gd.data.map((trace) => trace.x.length);")
        assert drawn == [len(drill["history"])] * 10
        assert driver.find_element(By.CSS_SELECTOR, "#services tbody").text  # says why none
        driver.find_element(By.ID, "back").click()
        # Back to a live span: the stream again, at the window length.
        pick_span(driver, "300")
        wait.until(lambda d: shown_resolution(d) == "5")
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        release(driver)


@pytest.mark.parametrize(("language", "per_hour"), [("en-US", "per hour"),
                                                     ("pt-BR", "por hora")])
def test_last_month_of_a_30_day_history_per_hour(week_web: WebProcess, language: str,
                                                 per_hour: str) -> None:
    """The issue's "serve --history over 30 generated days shows a month": the month's bars
    from the hourly rows, the page saying so, every client's total the API's."""
    from tests.web_helpers import get

    driver = browser(language)
    try:
        driver.get(week_web.url)
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: shown_resolution(d) == "5")
        pick_span(driver, str(MONTH))
        wait.until(lambda d: shown_resolution(d) == "3600")
        assert driver.find_element(By.ID, "resolution").text == per_hour
        api = get(week_web.url + f"api/clients?seconds={MONTH}&limit=1000")[1]
        assert api["resolution"] == 3600 and api["windows"] == MONTH // 3600
        month = get(week_web.url + f"api/clients?seconds={WEEK}&limit=1000")[1]
        assert all(c["total"] < m["total"] for c, m in zip(
            sorted(month["clients"], key=lambda c: c["ip"]),
            sorted(api["clients"], key=lambda c: c["ip"]), strict=True))

        def rows(d: webdriver.Chrome) -> dict[str, str]:
            try:
                return {row.get_attribute("data-client"): row.text for row in
                        d.find_elements(By.CSS_SELECTOR, "#clients tbody tr[data-client]")}
            except StaleElementReferenceException:
                return {}

        wait.until(lambda d: set(rows(d)) == set(WEEK_CLIENTS))
        separator = "." if language == "pt-BR" else ","
        for client in api["clients"]:
            assert f"{client['total']:,}".replace(",", separator) in rows(driver)[client["ip"]]
    finally:
        release(driver)


def test_from_to_at_420_px(week_web: WebProcess) -> None:
    """The from/to inputs fit a phone's width; a day of the week at its resolution."""
    driver = browser()
    try:
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": 420, "height": 900, "deviceScaleFactor": 1,
                                "mobile": False})
        driver.get(week_web.url)
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: shown_resolution(d) == "5")
        pick_span(driver, "custom")
        assert driver.find_element(By.ID, "from").is_displayed()
        assert driver.execute_script("return document.documentElement.scrollWidth") <= 420
        # One day, two days before the end, typed as a user would (the browser's local time).
        driver.execute_script(
            "const local = (s) => { const d = new Date(s * 1000);"
            " const p = (n) => String(n).padStart(2, '0');"
            " return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T`"
            " + `${p(d.getHours())}:${p(d.getMinutes())}`; };"
            "document.getElementById('from').value = local(arguments[0]);"
            "document.getElementById('to').value = local(arguments[1]);",
            WEEK_END - 3 * 86400, WEEK_END - 2 * 86400)
        driver.find_element(By.ID, "apply").click()
        wait.until(lambda d: shown_resolution(d) == "60")  # a day: 1,440 minutes
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#chart [data-client]"))
        assert "144 " in driver.find_element(By.ID, "status").text  # windows every 10 min
        assert driver.execute_script("return document.documentElement.scrollWidth") <= 420
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        release(driver)
